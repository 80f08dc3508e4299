//! Drift memory stays bounded over 10⁶ compared answers, measured with
//! dhat's global allocator (one test in this binary, so no other thread
//! allocates while it measures).
#![cfg(feature = "drift")]

use tower_rollout::drift::{Drift, DriftField, DriftSettings, MAX_CATEGORIES};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// 10⁶ compared answers, every one a new number and a new category: the
/// heap in use after them is what it was after the first 10⁴ (measured
/// with dhat), the samples stay at their fixed size, and the categories
/// at their cap.
#[test]
fn memory_stays_bounded_over_a_million_answers() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let settings = DriftSettings::new([
        DriftField::categorical("/label").unwrap(),
        DriftField::numeric("/score").unwrap(),
    ]);
    let mut drift = Drift::new(&settings);
    let mut p = Vec::with_capacity(64);
    let mut s = Vec::with_capacity(64);
    let mut feed = |drift: &mut Drift, from: u64, to: u64| {
        for i in from..to {
            use std::io::Write;
            p.clear();
            s.clear();
            write!(p, r#"{{"label":"c{i}","score":{i}.5}}"#).unwrap();
            write!(s, r#"{{"label":"d{i}","score":{}.25}}"#, i + 7).unwrap();
            drift.observe(&p, &s);
        }
    };
    feed(&mut drift, 0, 10_000);
    let early = dhat::HeapStats::get().curr_bytes;
    let sample_bytes = drift.heap_bytes();
    feed(&mut drift, 10_000, 1_000_000);
    let late = dhat::HeapStats::get().curr_bytes;
    assert_eq!(late, early, "heap in use after 10^4 and after 10^6 answers");
    assert_eq!(drift.heap_bytes(), sample_bytes);
    let r = drift.report();
    assert_eq!(r[1].primary_n, 1_000_000);
    // 64 of the primary's categories, 64 of the shadow's, and the rest
    // counted together.
    assert_eq!(r[0].categories.len(), 2 * MAX_CATEGORIES + 1);
    assert!(early > 0, "the allocator is measured");
    eprintln!("drift: {early} bytes in use after 10^4 answers, {late} after 10^6");
}
