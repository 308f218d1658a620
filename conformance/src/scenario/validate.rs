//! The static validator: every MUPDATE scenario is simulated on a fresh oracle
//! ([`super::oracle::Sim`]), and an expectation the specification forbids is an error with the
//! file and line (an OK for a RESERVE of an existing name, a MAILBOX line the model does not
//! have, an OK before login...). It also checks that a case's id matches its file name.

use std::collections::HashMap;

use super::imap_oracle::ImapSim;
use super::names::{Credentials, case_env};
use super::oracle::{Sim, Status};
use super::pattern::{Pat, PatKind, Pattern};
use super::template::Env;
use super::{Need, OpenMode, Protocol, Scenario, Step, StepKind};

/// A scenario that contradicts the specification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ValidationError {
    /// File.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Credentials used for validation (any values: the oracle does not look at them).
fn validation_env() -> Env {
    case_env(
        "000000",
        0,
        &Credentials {
            user: Some(("admin".into(), "secret".into())),
            user2: Some(("user2".into(), "secret2".into())),
        },
    )
}

/// The first word of a sent line: the tag.
pub fn tag_of(line: &[u8]) -> Vec<u8> {
    line.split(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default()
        .to_vec()
}

/// What the first two tokens of a pattern say statically: the tag, and either the statuses it
/// admits or the data line it describes.
enum Shape {
    Completion(Vec<u8>, Vec<Status>),
    Data(Vec<u8>, bool, [Option<Vec<u8>>; 3]),
    Other,
}

fn static_value(p: &Pat, env: &Env) -> Option<Vec<u8>> {
    match &p.kind {
        PatKind::Atom(a) => Some(a.clone()),
        PatKind::Str(t) | PatKind::Value(t) => t.expand(env).ok(),
        _ => None,
    }
}

fn statuses(p: &Pat) -> Option<Vec<Status>> {
    match &p.kind {
        PatKind::Atom(a) => Status::from_word(a).map(|s| vec![s]),
        PatKind::Alt(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(statuses(a)?);
            }
            Some(out)
        }
        PatKind::Any | PatKind::AnyAtom | PatKind::Capture(_) => {
            Some(vec![Status::Ok, Status::No, Status::Bad, Status::Bye])
        }
        _ => None,
    }
}

fn shape(p: &Pattern, env: &Env) -> Shape {
    let Some(tag) = p.items.first().and_then(|t| static_value(t, env)) else {
        return Shape::Other;
    };
    let Some(second) = p.items.get(1) else {
        return Shape::Other;
    };
    if let Some(st) = statuses(second) {
        return Shape::Completion(tag, st);
    }
    if let PatKind::Atom(w) = &second.kind {
        let active = if w.eq_ignore_ascii_case(b"MAILBOX") {
            true
        } else if w.eq_ignore_ascii_case(b"RESERVE") {
            false
        } else {
            return Shape::Other;
        };
        let field = |i: usize| p.items.get(i).and_then(|t| static_value(t, env));
        return Shape::Data(tag, active, [field(2), field(3), field(4)]);
    }
    Shape::Other
}

struct Walker<'a> {
    sc: &'a Scenario,
    sim: Sim,
    imap: Option<ImapSim>,
    env: Env,
    tags: HashMap<String, Vec<u8>>,
    errors: Vec<ValidationError>,
}

impl Walker<'_> {
    fn error(&mut self, line: usize, message: String) {
        self.errors.push(ValidationError {
            file: self.sc.path.clone(),
            line,
            message,
        });
    }

    fn env_for(&self, conn: &str) -> Env {
        let mut env = self.env.clone();
        if let Some(t) = self.tags.get(conn) {
            env.set("tag", t.clone());
        }
        env
    }

    fn capture_all(&mut self, p: &[Pat]) {
        for item in p {
            match &item.kind {
                PatKind::Capture(n) => self.env.set(n, format!("captured-{n}")),
                PatKind::Alt(v) | PatKind::List(v) | PatKind::Code(v) => self.capture_all(v),
                _ => {}
            }
        }
    }

    fn expectation(&mut self, conn: &str, p: &Pattern, line: usize) {
        let env = self.env_for(conn);
        self.capture_all(&p.items);
        match shape(p, &env) {
            Shape::Completion(tag, st) => {
                let r = match self.imap.as_mut() {
                    Some(imap) => imap.completed(conn, &tag, &st),
                    None => self.sim.completed(conn, &tag, &st),
                };
                if let Err(e) = r {
                    self.error(
                        line,
                        format!("`{}` contradicts the specification: {e}", p.src),
                    );
                }
            }
            Shape::Data(tag, active, fields) => {
                let f = [
                    fields[0].as_deref(),
                    fields[1].as_deref(),
                    fields[2].as_deref(),
                ];
                if let Err(e) = self.sim.data_line(conn, &tag, active, f) {
                    self.error(
                        line,
                        format!("`{}` contradicts the specification: {e}", p.src),
                    );
                }
            }
            Shape::Other => {}
        }
    }

    fn send(&mut self, conn: &str, bytes: Vec<u8>, set_tag: bool) {
        if set_tag {
            self.tags.insert(conn.to_string(), tag_of(&bytes));
        }
        match self.imap.as_mut() {
            Some(imap) => imap.sent(conn, &bytes),
            None => {
                self.sim.sent(conn, &bytes);
            }
        }
    }

    fn step(&mut self, step: &Step) {
        let line = step.line;
        match &step.kind {
            StepKind::Open { conn, mode, master } => {
                let logged = matches!(mode, OpenMode::Login | OpenMode::LoginUser2);
                self.sim.open_on(conn, logged, *master);
                if let Some(imap) = self.imap.as_mut() {
                    imap.open(conn, logged);
                }
            }
            StepKind::Login { conn, .. } => {
                self.sim.logged_in(conn);
                if let Some(imap) = self.imap.as_mut() {
                    imap.logged_in(conn);
                }
            }
            StepKind::Close { conn } | StepKind::Closed { conn } => {
                self.sim.close(conn);
                if let Some(imap) = self.imap.as_mut() {
                    imap.close(conn);
                }
            }
            StepKind::StartTls { .. }
            | StepKind::Tls { .. }
            | StepKind::Silent { .. }
            | StepKind::Settle { .. } => {}
            StepKind::Send { conn, text, crlf } => {
                let env = self.env_for(conn);
                match text.expand(&env) {
                    Ok(mut b) => {
                        if *crlf {
                            b.extend_from_slice(b"\r\n");
                        }
                        self.send(conn, b, *crlf);
                    }
                    Err(e) => self.error(line, e),
                }
            }
            StepKind::SendJudged { conn, text } => {
                let env = self.env_for(conn);
                match text.expand(&env) {
                    Ok(mut b) => {
                        b.extend_from_slice(b"\r\n");
                        let tag = tag_of(&b);
                        self.send(conn, b, true);
                        let exp = self.sim.expected(conn, &tag);
                        if exp.is_empty() {
                            self.error(line, ">! needs one complete command".into());
                        }
                        // The runner judges the reply; statically, every allowed reply stays.
                        let all = [Status::Ok, Status::No, Status::Bad, Status::Bye];
                        let _ = self.sim.completed(conn, &tag, &all);
                    }
                    Err(e) => self.error(line, e),
                }
            }
            StepKind::Expect { conn, pattern, .. } | StepKind::Eventually { conn, pattern, .. } => {
                self.expectation(conn, pattern, line);
            }
            StepKind::Unordered { conn, patterns } => {
                for p in patterns {
                    self.expectation(conn, p, line);
                }
            }
            StepKind::Collect { conn, until, .. } => self.expectation(conn, until, line),
            StepKind::Has { pattern, .. } | StepKind::Last { pattern, .. } => {
                self.capture_all(&pattern.items);
            }
            StepKind::Lacks { .. } => {}
            StepKind::ExpectExact { .. }
            | StepKind::ExpectRegex { .. }
            | StepKind::Same { .. }
            | StepKind::Count { .. } => {}
            StepKind::Race { sends } => {
                let mut bytes = Vec::new();
                for (conn, t, l) in sends {
                    let env = self.env_for(conn);
                    match t.expand(&env) {
                        Ok(mut b) => {
                            b.extend_from_slice(b"\r\n");
                            self.tags.insert(conn.clone(), tag_of(&b));
                            bytes.push((conn.clone(), b));
                        }
                        Err(e) => self.error(*l, e),
                    }
                }
                match self.sim.race(&bytes) {
                    Ok(keys) => {
                        // The runner reads and judges every race reply.
                        let all = [Status::Ok, Status::No, Status::Bad, Status::Bye];
                        for (c, t) in keys {
                            let _ = self.sim.completed(&c, &t, &all);
                        }
                    }
                    Err(e) => self.error(line, format!("race: {e}")),
                }
            }
        }
    }
}

/// Validate one parsed scenario. `expected_id`, when given, is the id its path implies.
///
/// A MUPDATE case that declares neither `needs: master` nor `needs: slave` runs on both, so it
/// is simulated as a slave too (writes refused): if that contradicts its expectations, it must
/// say `needs: master`.
pub fn validate(sc: &Scenario, expected_id: Option<&str>) -> Result<(), Vec<ValidationError>> {
    let first = validate_as(sc, expected_id, sc.meta.needs.contains(&Need::Slave));
    let either_role =
        !sc.meta.needs.contains(&Need::Master) && !sc.meta.needs.contains(&Need::Slave);
    if first.is_ok()
        && either_role
        && sc.meta.protocol == Protocol::Mupdate
        && let Err(errs) = validate_as(sc, None, true)
    {
        return Err(errs
            .into_iter()
            .take(1)
            .map(|e| ValidationError {
                message: format!(
                    "on a slave (writes refused) {}; add `needs: master`",
                    e.message
                ),
                ..e
            })
            .collect());
    }
    first
}

/// The oracle's simulation for a MUPDATE case, as the validator and the runner set it up.
pub fn sim_for(sc: &Scenario, slave: bool) -> Sim {
    let sim = Sim::new(slave);
    if sc
        .meta
        .needs
        .contains(&Need::NoCapability("PARTIAL-UPDATE".into()))
    {
        sim.without_partial_update()
    } else {
        sim
    }
}

fn validate_as(
    sc: &Scenario,
    expected_id: Option<&str>,
    slave: bool,
) -> Result<(), Vec<ValidationError>> {
    let mut w = Walker {
        sc,
        sim: sim_for(sc, slave),
        imap: (sc.meta.protocol == Protocol::Imap).then(ImapSim::default),
        env: validation_env(),
        tags: HashMap::new(),
        errors: Vec::new(),
    };
    if let Some(id) = expected_id
        && id != sc.meta.id
    {
        w.error(
            1,
            format!(
                "id {:?} does not match the file's path ({id:?})",
                sc.meta.id
            ),
        );
    }
    let prefix = match sc.meta.protocol {
        Protocol::Mupdate => "mupdate/",
        Protocol::Imap => "imap/",
    };
    if !sc.meta.id.starts_with(prefix) {
        w.error(
            1,
            format!("the id of a {} case starts with {prefix}", sc.meta.protocol),
        );
    }
    // Setup and test run in sequence on one simulated database; cleanup is best effort and may
    // legitimately hit refusals, so it is not judged.
    for s in sc.setup.iter().chain(&sc.test) {
        w.step(s);
    }
    if w.errors.is_empty() {
        Ok(())
    } else {
        Err(w.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_scenario;

    fn check(body: &str) -> Result<(), Vec<ValidationError>> {
        let text = format!(
            "id: mupdate/t\ntitle: t\nprotocol: mupdate\nrfc: RFC3656 4.9\nlevel: MUST\nneeds: master\n[test]\n{body}"
        );
        validate(&parse_scenario("t.scn", &text).unwrap(), Some("mupdate/t"))
    }

    #[test]
    fn ok_for_reserve_of_existing_name_is_rejected() {
        let e = check(
            "open c\nc > A1 ACTIVATE \"$box\" \"$host!p\" \"\"\nc < $tag OK ...\nc > R1 RESERVE \"$box\" \"$host!p\"\nc < $tag OK ...\n",
        )
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 12);
        assert!(e[0].message.contains("mailbox already exists"), "{}", e[0]);
    }

    #[test]
    fn correct_cases_pass() {
        check(
            "open c\nc > R1 RESERVE \"$box\" \"$host!p\"\nc < $tag OK ...\nc > F1 FIND \"$box\"\nc < $tag RESERVE \"$box\" \"$host!p\"\nc < $tag OK ...\nc > D1 DELETE \"$box\"\nc < $tag OK ...\nc > D2 DELETE \"$box\"\nc < $tag NO|BAD ...\n",
        )
        .unwrap();
    }

    #[test]
    fn data_line_the_model_lacks_is_rejected() {
        let e = check(
            "open c\nc > R1 RESERVE \"$box\" \"$host!p\"\nc < $tag OK ...\nc > F1 FIND \"$box\"\nc < $tag MAILBOX \"$box\" \"$host!p\" \"\"\n",
        )
        .unwrap_err();
        assert!(e[0].message.contains("no MAILBOX line"), "{}", e[0]);
    }

    #[test]
    fn ok_before_login_is_rejected() {
        let e = check("open c noauth\nc > F1 FIND \"$box\"\nc < $tag OK ...\n").unwrap_err();
        assert!(e[0].message.contains("not authenticated"), "{}", e[0]);
    }

    #[test]
    fn writes_without_needs_master_are_rejected() {
        let text = "id: mupdate/t\ntitle: t\nprotocol: mupdate\nrfc: RFC3656 4.1\nlevel: MUST\nopen c\nc > A1 ACTIVATE \"$box\" \"h\" \"\"\nc < $tag OK ...\n";
        let e = validate(&parse_scenario("t.scn", text).unwrap(), None).unwrap_err();
        assert!(e[0].message.contains("add `needs: master`"), "{}", e[0]);
    }

    #[test]
    fn master_connections_write_for_the_slave() {
        let case = |body: &str| {
            let text = format!(
                "id: mupdate/t\ntitle: t\nprotocol: mupdate\nrfc: RFC3656 2\nlevel: MUST\nneeds: slave master\n[test]\n{body}"
            );
            validate(&parse_scenario("t.scn", &text).unwrap(), Some("mupdate/t"))
        };
        // The master takes the write; the slave's FIND then has the record.
        case("open m master\nm > A1 ACTIVATE \"$box\" \"h!p\" \"\"\nm < $tag OK ...\nopen s\ns > F1 FIND \"$box\"\ns < $tag MAILBOX \"$box\" \"h!p\" \"\"\n")
            .unwrap();
        // The slave's own connection still refuses writes.
        let e =
            case("open s\ns > A1 ACTIVATE \"$box\" \"h!p\" \"\"\ns < $tag OK ...\n").unwrap_err();
        assert!(e[0].message.contains("slave"), "{}", e[0]);
    }

    #[test]
    fn update_with_an_argument_is_malformed_without_partial_update() {
        let body = "open c\nc > U1 UPDATE \"h\"\nc < $tag BAD ...\nc > F1 FIND \"$box\"\nc < $tag OK ...\n";
        let text = |needs: &str| {
            format!(
                "id: mupdate/t\ntitle: t\nprotocol: mupdate\nrfc: RFC3656 5\nlevel: MUST\nneeds: {needs}\n[test]\n{body}"
            )
        };
        validate(
            &parse_scenario("t.scn", &text("nocap:PARTIAL-UPDATE")).unwrap(),
            None,
        )
        .unwrap();
        // Without the need, the server may stream after it: FIND's OK is not certain.
        assert!(validate(&parse_scenario("t.scn", &text("admin")).unwrap(), None).is_err());
    }

    #[test]
    fn wrong_id_is_rejected() {
        let text = "id: mupdate/other\ntitle: t\nprotocol: mupdate\nrfc: RFC3656 4.9\nlevel: MUST\nopen c\n";
        let e = validate(&parse_scenario("t.scn", text).unwrap(), Some("mupdate/t")).unwrap_err();
        assert!(e[0].message.contains("does not match"));
    }

    #[test]
    fn race_then_wrong_static_expectation() {
        // After a RESERVE race the name exists whoever won: a further RESERVE must be NO.
        let e = check(
            "open a\nopen b\nrace\n a > R1 RESERVE \"$box\" \"$host!p\"\n b > R2 RESERVE \"$box\" \"$host2!p\"\nend\na > R3 RESERVE \"$box\" \"x\"\na < $tag OK ...\n",
        )
        .unwrap_err();
        assert!(e[0].message.contains("already exists"), "{}", e[0]);
    }
}
