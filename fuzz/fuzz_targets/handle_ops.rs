//! Fuzzes sequences of `RolloutHandle` calls and admitted requests against a
//! model of the documented state machine.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tower_rollout::Color;

#[path = "../checks/handle_ops.rs"]
mod checks;

use checks::{Input, Op};

/// A fraction: often a valid one, often an edge, sometimes any bit pattern.
fn fraction(u: &mut Unstructured<'_>) -> arbitrary::Result<f64> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => f64::from(u16::arbitrary(u)?) / f64::from(u16::MAX),
        1 => *u.choose(&[
            0.0,
            -0.0,
            1.0,
            0.5,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1.0 + f64::EPSILON,
            -f64::MIN_POSITIVE,
            f64::MIN_POSITIVE,
            5e-324,
            1.0 - f64::EPSILON / 2.0,
            f64::MAX,
        ])?,
        _ => f64::arbitrary(u)?,
    })
}

fn color(u: &mut Unstructured<'_>) -> arbitrary::Result<Color> {
    Ok(if u.arbitrary()? {
        Color::Green
    } else {
        Color::Blue
    })
}

fn op(u: &mut Unstructured<'_>) -> arbitrary::Result<Op> {
    Ok(match u.int_in_range(0..=11u8)? {
        0 => Op::Promote,
        1 => Op::Rollback,
        2 => Op::SetSplit(fraction(u)?),
        3 => Op::MirrorStandby(fraction(u)?),
        4 | 5 => Op::Admit {
            keep: u.arbitrary()?,
            body: u.arbitrary()?,
        },
        6 => Op::DropBody(u.arbitrary::<u8>()?.into()),
        7 => Op::FinishBody(u.arbitrary::<u8>()?.into()),
        8 => Op::Watch(color(u)?),
        9 => Op::PollWatch(color(u)?),
        10 => Op::DropWatch(color(u)?),
        _ => Op::Settle,
    })
}

fn input(u: &mut Unstructured<'_>) -> arbitrary::Result<Input> {
    let runtime = u.arbitrary()?;
    let drop_router_first = u.arbitrary()?;
    let mut ops = Vec::new();
    u.arbitrary_loop(None, Some(256), |u| {
        ops.push(op(u)?);
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    Ok(Input {
        runtime,
        drop_router_first,
        ops,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(input) = input(&mut u) {
        checks::check(&input);
    }
});
