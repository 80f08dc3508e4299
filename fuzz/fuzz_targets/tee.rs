//! Fuzzes the request-body tee of `MirrorLayer`: chunking, trailers, early
//! drops, timing, buffer and budget.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../checks/tee.rs"]
mod checks;

use checks::Input;

fn input(u: &mut Unstructured<'_>) -> arbitrary::Result<Input> {
    let trailers = u.arbitrary()?;
    let primary_reads = if u.arbitrary()? {
        Some(usize::from(u.int_in_range(0..=40u8)?))
    } else {
        None
    };
    let interleave = u.arbitrary()?;
    let shadow_yields = u.int_in_range(0..=3u8)?;
    let pending_mask = u.arbitrary()?;
    let exact_hint = u.arbitrary()?;
    let accurate_end = u.arbitrary()?;
    let buffer_frames = usize::from(u.int_in_range(0..=40u8)?);
    let max_body_bytes = match u.int_in_range(0..=3u8)? {
        0 => u64::MAX,
        1 => u64::MAX / 2,
        _ => u64::from(u16::arbitrary(u)? % 2048),
    };
    let mut chunks = Vec::new();
    u.arbitrary_loop(None, Some(32), |u| {
        let len = usize::from(u.int_in_range(0..=64u8)?).min(u.len());
        chunks.push(u.bytes(len)?.to_vec());
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    Ok(Input {
        chunks,
        trailers,
        primary_reads,
        interleave,
        shadow_yields,
        pending_mask,
        exact_hint,
        accurate_end,
        buffer_frames,
        max_body_bytes,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(input) = input(&mut u) {
        checks::check(&input);
    }
});
