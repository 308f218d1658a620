//! The requirement tables (`scenarios/requirements/*.md`, embedded in the binary): every row is
//! well formed, every testable requirement lists a scenario, every listed id exists.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use conformance::corpus;
use conformance::coverage::{self, Problem};

fn corpus_ids() -> Vec<String> {
    let files = corpus::embedded().unwrap();
    corpus::parse_all(&files)
        .unwrap()
        .into_iter()
        .map(|s| s.meta.id)
        .collect()
}

#[test]
fn requirement_tables_are_well_formed_and_covered() {
    let (tables, mut problems) = coverage::embedded();
    problems.extend(coverage::check(&tables, &corpus_ids()));
    let text: Vec<String> = problems.iter().map(Problem::to_string).collect();
    assert!(text.is_empty(), "table problems:\n{}", text.join("\n"));
    let t = coverage::totals(&tables.requirements, None);
    assert!(t.requirements > 50, "{t:?}");
    assert_eq!(t.testable, t.covered);
    assert_eq!(t.testable + t.untestable, t.requirements);
}

#[test]
fn both_rfcs_have_rows() {
    let (tables, _) = coverage::embedded();
    for rfc in ["RFC3656-", "RFC3502-"] {
        assert!(
            tables.requirements.iter().any(|r| r.req.starts_with(rfc)),
            "no {rfc} row"
        );
    }
}
