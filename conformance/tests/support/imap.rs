//! A small fake IMAP server with MULTIAPPEND, LITERAL+ and UIDPLUS on the model's `MailStore`,
//! for the runner's own tests only (never a verdict on the corpus).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use conformance::wire::frame::Framer;
use conformance::wire::token::{Token, tokenize};
use murder_model::multiappend::{
    AppendMessage, AppendOutcome, MailStore, MessageFault, parse_uid_set, uid_set,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct FakeImap {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeImap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start() -> FakeImap {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Arc::new(Mutex::new(MailStore::new()));
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.spawn(serve(s, store.clone()));
        }
    });
    FakeImap { addr, task }
}

const CAPS: &str = "IMAP4rev1 MULTIAPPEND LITERAL+ UIDPLUS AUTH=PLAIN";

fn text(t: &Token) -> String {
    match t {
        Token::Atom(a) => String::from_utf8_lossy(a).into_owned(),
        other => String::from_utf8_lossy(other.string_value().unwrap_or_default()).into_owned(),
    }
}

async fn serve(mut s: TcpStream, store: Arc<Mutex<MailStore>>) {
    let _ = s
        .write_all(format!("* OK [CAPABILITY {CAPS}] fake ready\r\n").as_bytes())
        .await;
    let mut framer = Framer::default();
    let mut seen: Vec<u8> = Vec::new();
    let mut scan = 0;
    let mut authed = false;
    let mut selected: Option<String> = None;
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        seen.extend_from_slice(&buf[..n]);
        for _ in 0..super::sync_literals(&seen, &mut scan) {
            let _ = s.write_all(b"+ go ahead\r\n").await;
        }
        framer.push(&buf[..n]);
        while let Ok(Some(line)) = framer.next_line() {
            let toks: Vec<Token> = tokenize(&line.bytes).into_iter().map(|t| t.token).collect();
            let tag = toks.first().map(text).unwrap_or_default();
            let cmd = toks
                .get(1)
                .map(text)
                .unwrap_or_default()
                .to_ascii_uppercase();
            let mut out = String::new();
            let arg = |i: usize| toks.get(i).map(text).unwrap_or_default();
            match cmd.as_str() {
                "CAPABILITY" => out.push_str(&format!("* CAPABILITY {CAPS}\r\n{tag} OK done\r\n")),
                "NOOP" => out.push_str(&format!("{tag} OK done\r\n")),
                "LOGOUT" => {
                    let _ = s
                        .write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())
                        .await;
                    return;
                }
                "LOGIN" if arg(3) == "wrong" => out.push_str(&format!("{tag} NO bad password\r\n")),
                "LOGIN" => {
                    authed = true;
                    out.push_str(&format!("{tag} OK logged in\r\n"));
                }
                _ if !authed => out.push_str(&format!("{tag} NO login first\r\n")),
                "CREATE" => {
                    let ok = store.lock().unwrap().create(&arg(2));
                    out.push_str(&format!(
                        "{tag} {}\r\n",
                        if ok { "OK created" } else { "NO exists" }
                    ));
                }
                "DELETE" => {
                    let ok = store.lock().unwrap().delete(&arg(2));
                    out.push_str(&format!(
                        "{tag} {}\r\n",
                        if ok {
                            "OK deleted"
                        } else {
                            "NO no such mailbox"
                        }
                    ));
                }
                "SELECT" | "EXAMINE" => {
                    let g = store.lock().unwrap();
                    match g.mailbox(&arg(2)) {
                        Some(m) => {
                            selected = Some(arg(2));
                            out.push_str(&format!(
                                "* FLAGS (\\Seen \\Flagged)\r\n* {} EXISTS\r\n* OK [UIDVALIDITY {}] v\r\n* OK [UIDNEXT {}] n\r\n{tag} OK [READ-ONLY] done\r\n",
                                m.messages.len(), m.uid_validity, m.uid_next
                            ));
                        }
                        None => out.push_str(&format!("{tag} NO no such mailbox\r\n")),
                    }
                }
                "APPEND" => {
                    let mut msgs = Vec::new();
                    let mut flags = Vec::new();
                    for t in toks.iter().skip(3) {
                        match t {
                            Token::List(items) => {
                                flags = items.iter().map(|i| text(&i.token)).collect()
                            }
                            Token::Literal { data, .. } => {
                                msgs.push(AppendMessage {
                                    flags: std::mem::take(&mut flags),
                                    size: data.len() as u64,
                                    content: data.len() as u64,
                                    fault: data.is_empty().then_some(MessageFault::ZeroLength),
                                });
                            }
                            _ => {}
                        }
                    }
                    match store.lock().unwrap().append(&arg(2), &msgs) {
                        AppendOutcome::Ok { uid_validity, uids } => out.push_str(&format!(
                            "{tag} OK [APPENDUID {uid_validity} {}] done\r\n",
                            uid_set(&uids)
                        )),
                        AppendOutcome::TryCreate => {
                            out.push_str(&format!("{tag} NO [TRYCREATE] no mailbox\r\n"))
                        }
                        AppendOutcome::Refused(f) => out.push_str(&format!("{tag} NO {f:?}\r\n")),
                    }
                }
                "FETCH" => {
                    let g = store.lock().unwrap();
                    let m = selected.as_deref().and_then(|b| g.mailbox(b));
                    if let Some(m) = m {
                        for (i, msg) in m.messages.iter().enumerate() {
                            out.push_str(&format!(
                                "* {} FETCH (RFC822.SIZE {})\r\n",
                                i + 1,
                                msg.size
                            ));
                        }
                    }
                    out.push_str(&format!("{tag} OK done\r\n"));
                }
                "UID" => {
                    let g = store.lock().unwrap();
                    let m = selected.as_deref().and_then(|b| g.mailbox(b));
                    let want = parse_uid_set(&arg(4)).unwrap_or_default();
                    let hits: Vec<String> = m
                        .map(|m| {
                            m.messages
                                .iter()
                                .filter(|x| want.contains(&x.uid))
                                .map(|x| x.uid.to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push_str(&format!("* SEARCH {}\r\n{tag} OK done\r\n", hits.join(" ")));
                }
                _ => out.push_str(&format!("{tag} BAD unknown\r\n")),
            }
            if s.write_all(out.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}
