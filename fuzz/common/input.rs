// The input layout shared by every fuzz target (see the control bits in checks.rs), included
// with `include!` by checks.rs and conformance_checks.rs. No dependencies.

/// Control bit: refuse synchronizing literals.
pub const CTL_REFUSE: u8 = 0x08;
/// Control bit: small limits.
pub const CTL_SMALL: u8 = 0x10;
/// Control bit: login prefix (session targets).
pub const CTL_LOGIN: u8 = 0x20;
/// Control bit: SASL line after AUTHENTICATE (mupdate_codec).
pub const CTL_SASL: u8 = 0x40;

/// Split an input into its control byte and the stream.
pub fn split_control(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&ctl, rest)) => (ctl, rest),
        None => (0, &[]),
    }
}

/// Cut `stream` into the pieces the control byte asks for.
pub fn chunks(ctl: u8, stream: &[u8]) -> Vec<&[u8]> {
    let exp = u32::from(ctl & 0x07);
    if exp == 0 {
        return vec![stream];
    }
    let max = 1usize << exp;
    let mut state = u32::from(ctl).wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % max + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// Every regular file (not dot-files) under `<fuzz_dir>/<kind>/<target>/`, sorted: the inputs
/// the replay tests run (`kind` is `seeds` or `regressions`).
pub fn fuzz_inputs(
    fuzz_dir: &std::path::Path,
    kind: &str,
    target: &str,
) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![fuzz_dir.join(kind).join(target)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for p in entries.flatten().map(|e| e.path()) {
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Run `check` on every seed and regression input of `target` except the `unfixed` file names,
/// naming the file that fails; at least `min_seeds` seeds must exist.
pub fn replay_inputs(
    fuzz_dir: &std::path::Path,
    target: &str,
    min_seeds: usize,
    unfixed: &[&str],
    check: fn(&[u8]),
) {
    let seeds = fuzz_inputs(fuzz_dir, "seeds", target);
    assert!(
        seeds.len() >= min_seeds,
        "only {} seeds for {target}: the corpus is missing",
        seeds.len()
    );
    let regressions = fuzz_inputs(fuzz_dir, "regressions", target);
    for f in seeds.iter().chain(&regressions) {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        if unfixed.iter().any(|u| name.as_deref() == Some(*u)) {
            continue;
        }
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{target} check failed on {}", f.display());
    }
}
