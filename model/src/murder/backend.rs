//! A backend IMAP server as MUPDATE client: creates the RFC 4.9 way, deletes, and (with repair)
//! reconciles its mailboxes with the master like Cyrus `ctl_mboxlist -m`:
//!
//! * a record at our location for a mailbox we do not hold → DELETE (stale reservation);
//! * a held mailbox recorded at our location → ACTIVATE;
//! * a held mailbox recorded elsewhere → give up the local copy (someone else owns the name);
//! * a held mailbox the master does not know → RESERVE, then ACTIVATE if granted, else give it
//!   up. (Cyrus "force activates" here; ACTIVATE always succeeds, so that can steal a name
//!   another backend reserved in the meantime: [`Bugs::blind_reactivate`].)

use stateright::actor::{Out, model_timeout};

use super::{
    ACL, Bugs, Durable, Msg, MurderActor, Timer, index_of, location_of, master_id, name_of,
};
use crate::mailbox_db::{Command, Reply};

/// One step of a backend's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Create mailbox `n`: RESERVE, local create, ACTIVATE.
    Create(u8),
    /// Delete mailbox `n` (if held): DELETE on the master, then local delete.
    Delete(u8),
}

/// What a backend is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// RESERVE sent.
    AwaitReserve(u8),
    /// RESERVE granted; the local create is under way.
    LocalCreate(u8),
    /// ACTIVATE sent.
    AwaitActivate(u8),
    /// DELETE sent.
    AwaitDelete(u8),
    /// DELETE answered; the local delete is under way.
    LocalDelete(u8),
    /// Repair: `LIST` sent.
    AwaitList,
    /// Repair: this step's command sent; the rest of the queue follows.
    Repairing(RepairStep),
    /// The plan is finished (or abandoned after a restart).
    Done,
}

/// One step of the start-up reconciliation (repair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepairStep {
    /// DELETE a record at our location for a mailbox we do not hold.
    DeleteRecord(u8),
    /// ACTIVATE a held mailbox whose record is at our location.
    Activate(u8),
    /// RESERVE a held mailbox the master does not know; ACTIVATE if granted, else give it up.
    Reserve(u8),
}

/// A backend's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendState {
    /// Local mailboxes, bit `n` for name `n` (durable).
    pub held: u8,
    /// Next plan step.
    pub pc: u8,
    /// What it is doing.
    pub phase: Phase,
    /// Connection number: answers on older connections are ignored.
    pub conn: u8,
    /// Ghost: RESERVEs refused.
    pub refused: u8,
    /// Restarts so far (durable).
    pub restarts: u8,
    /// Repair steps still to run after the current one.
    pub repair_queue: Vec<RepairStep>,
}

impl BackendState {
    /// Whether it holds mailbox `n` locally.
    pub fn holds(&self, n: u8) -> bool {
        self.held & (1 << n) != 0
    }

    fn durable(&self) -> Durable {
        Durable::Backend {
            held: self.held,
            restarts: self.restarts,
        }
    }
}

/// What a backend's handlers need from its actor definition.
pub struct Ctx<'a> {
    /// Its index.
    pub index: u8,
    /// Its plan.
    pub plan: &'a [Op],
    /// Reconcile at start-up and after a lost connection.
    pub repair: bool,
    /// Broken variants.
    pub bugs: Bugs,
}

fn request(s: &BackendState, cmd: Command, o: &mut Out<MurderActor>) {
    o.send(master_id(), Msg::Request { conn: s.conn, cmd });
}

/// Start the next plan step (skipping steps with nothing to do).
fn next_op(ctx: &Ctx, s: &mut BackendState, o: &mut Out<MurderActor>) {
    while let Some(op) = ctx.plan.get(usize::from(s.pc)) {
        match *op {
            Op::Create(n) if !s.holds(n) => {
                if ctx.bugs.cyrus_create_order {
                    // Cyrus HEAD: the local mailbox first, then RESERVE and ACTIVATE.
                    s.held |= 1 << n;
                    o.save(s.durable());
                }
                let cmd = Command::Reserve {
                    name: name_of(n),
                    location: location_of(ctx.index),
                };
                request(s, cmd, o);
                s.phase = Phase::AwaitReserve(n);
                return;
            }
            Op::Delete(n) if s.holds(n) => {
                if ctx.bugs.local_delete_first {
                    s.held &= !(1 << n);
                    o.save(s.durable());
                }
                request(s, Command::Delete { name: name_of(n) }, o);
                s.phase = Phase::AwaitDelete(n);
                return;
            }
            _ => s.pc += 1,
        }
    }
    s.phase = Phase::Done;
}

/// Repair: LIST everything (Cyrus `ctl_mboxlist -m` compares the whole list with its own).
fn reconcile(_ctx: &Ctx, s: &mut BackendState, o: &mut Out<MurderActor>) {
    request(s, Command::List { prefix: None }, o);
    s.repair_queue.clear();
    s.phase = Phase::AwaitList;
}

/// Run the next repair step, or go back to the plan.
fn next_repair(ctx: &Ctx, s: &mut BackendState, o: &mut Out<MurderActor>) {
    if s.repair_queue.is_empty() {
        next_op(ctx, s, o);
        return;
    }
    let step = s.repair_queue.remove(0);
    let cmd = match step {
        RepairStep::DeleteRecord(n) => Command::Delete { name: name_of(n) },
        RepairStep::Activate(n) => activate(ctx, n),
        RepairStep::Reserve(n) => Command::Reserve {
            name: name_of(n),
            location: location_of(ctx.index),
        },
    };
    request(s, cmd, o);
    s.phase = Phase::Repairing(step);
}

fn activate(ctx: &Ctx, n: u8) -> Command {
    Command::Activate {
        name: name_of(n),
        location: location_of(ctx.index),
        acl: ACL.to_vec(),
    }
}

/// Give up a local mailbox that belongs elsewhere (Cyrus: "deleting local mailbox").
fn give_up(s: &mut BackendState, n: u8, o: &mut Out<MurderActor>) {
    s.held &= !(1 << n);
    o.save(s.durable());
}

fn step_done(ctx: &Ctx, s: &mut BackendState, o: &mut Out<MurderActor>) {
    s.pc += 1;
    next_op(ctx, s, o);
}

/// Start or restart. A restarted backend abandons its plan and, with repair, reconciles.
pub fn on_start(
    index: u8,
    plan: &[Op],
    repair: bool,
    bugs: Bugs,
    storage: &Option<Durable>,
    o: &mut Out<MurderActor>,
) -> BackendState {
    let ctx = Ctx {
        index,
        plan,
        repair,
        bugs,
    };
    let (held, restarts) = match storage {
        Some(Durable::Backend { held, restarts }) => (*held, restarts.saturating_add(1)),
        _ => (0, 0),
    };
    let mut s = BackendState {
        held,
        pc: 0,
        phase: Phase::Done,
        conn: restarts.saturating_mul(16),
        refused: 0,
        restarts,
        repair_queue: Vec::new(),
    };
    o.save(s.durable());
    if restarts == 0 {
        next_op(&ctx, &mut s, o);
    } else {
        s.pc = u8::try_from(plan.len()).unwrap_or(u8::MAX);
        if repair {
            reconcile(&ctx, &mut s, o);
        }
    }
    s
}

/// Handle one message; true when the state changed (or messages were sent).
pub fn on_msg(ctx: &Ctx, s: &mut BackendState, msg: Msg, o: &mut Out<MurderActor>) -> bool {
    match msg {
        Msg::Response { conn, reply } if conn == s.conn => on_reply(ctx, s, reply, o),
        Msg::Reset => match s.phase {
            Phase::AwaitReserve(_) | Phase::AwaitActivate(_) | Phase::AwaitDelete(_) => {
                // The operation failed; the command may or may not have committed.
                if ctx.bugs.cyrus_create_order
                    && let Phase::AwaitReserve(n) | Phase::AwaitActivate(n) = s.phase
                {
                    // Cyrus HEAD rolls the local create back, and sends no DELETE.
                    give_up(s, n, o);
                }
                s.conn = s.conn.saturating_add(1);
                s.pc += 1;
                if ctx.repair {
                    reconcile(ctx, s, o);
                } else {
                    next_op(ctx, s, o);
                }
                true
            }
            Phase::AwaitList | Phase::Repairing(_) => {
                s.conn = s.conn.saturating_add(1);
                reconcile(ctx, s, o);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn on_reply(ctx: &Ctx, s: &mut BackendState, reply: Reply, o: &mut Out<MurderActor>) -> bool {
    match s.phase {
        Phase::AwaitReserve(n) => {
            if reply.result.is_ok() {
                if ctx.bugs.cyrus_create_order {
                    request(s, activate(ctx, n), o);
                    s.phase = Phase::AwaitActivate(n);
                } else {
                    s.phase = Phase::LocalCreate(n);
                    o.set_timer(Timer::LocalStep, model_timeout());
                }
            } else {
                if ctx.bugs.cyrus_create_order {
                    give_up(s, n, o);
                }
                s.refused = s.refused.saturating_add(1);
                step_done(ctx, s, o);
            }
        }
        Phase::AwaitActivate(_) => step_done(ctx, s, o),
        Phase::AwaitDelete(n) => {
            if ctx.bugs.local_delete_first {
                step_done(ctx, s, o);
            } else {
                s.phase = Phase::LocalDelete(n);
                o.set_timer(Timer::LocalStep, model_timeout());
            }
        }
        Phase::AwaitList => {
            let mine = location_of(ctx.index);
            let mut queue = Vec::new();
            for r in &reply.data {
                if let Some(n) = index_of(&r.name)
                    && !s.holds(n)
                    && r.entry.location() == mine.as_slice()
                {
                    queue.push(RepairStep::DeleteRecord(n));
                }
            }
            for n in 0..8u8 {
                if !s.holds(n) {
                    continue;
                }
                let at = reply
                    .data
                    .iter()
                    .find(|r| r.name == name_of(n))
                    .map(|r| r.entry.location().to_vec());
                if ctx.bugs.blind_reactivate {
                    queue.push(RepairStep::Activate(n));
                    continue;
                }
                match at {
                    Some(l) if l == mine => queue.push(RepairStep::Activate(n)),
                    Some(_) => give_up(s, n, o),
                    None => queue.push(RepairStep::Reserve(n)),
                }
            }
            s.repair_queue = queue;
            next_repair(ctx, s, o);
        }
        Phase::Repairing(step) => {
            if let RepairStep::Reserve(n) = step {
                if reply.result.is_ok() {
                    s.repair_queue.insert(0, RepairStep::Activate(n));
                } else {
                    give_up(s, n, o);
                }
            }
            next_repair(ctx, s, o);
        }
        Phase::LocalCreate(_) | Phase::LocalDelete(_) | Phase::Done => return false,
    }
    true
}

/// Handle a timer: finish the local create or delete.
pub fn on_timeout(
    ctx: &Ctx,
    s: &mut BackendState,
    timer: &Timer,
    o: &mut Out<MurderActor>,
) -> bool {
    match (timer, s.phase) {
        (Timer::LocalStep, Phase::LocalCreate(n)) => {
            s.held |= 1 << n;
            o.save(s.durable());
            request(s, activate(ctx, n), o);
            s.phase = Phase::AwaitActivate(n);
            true
        }
        (Timer::LocalStep, Phase::LocalDelete(n)) => {
            s.held &= !(1 << n);
            o.save(s.durable());
            step_done(ctx, s, o);
            true
        }
        _ => false,
    }
}
