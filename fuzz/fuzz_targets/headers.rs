//! Fuzzes the router's override header, sticky key and served-by header.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../checks/headers.rs"]
mod checks;

use checks::{Header, Input, Name, Value};

fn header(u: &mut Unstructured<'_>) -> arbitrary::Result<Header> {
    let name = match u.int_in_range(0..=5u8)? {
        0 => Name::Sticky,
        1 | 2 => Name::Override,
        3 => Name::ServedBy,
        4 => Name::Allow,
        _ => Name::Other(Vec::<u8>::arbitrary(u)?),
    };
    let value = if u.arbitrary()? {
        Value::Color {
            green: u.arbitrary()?,
            case: u.arbitrary()?,
            pad: u.arbitrary()?,
        }
    } else {
        Value::Raw(Vec::<u8>::arbitrary(u)?)
    };
    Ok(Header { name, value })
}

fn input(u: &mut Unstructured<'_>) -> arbitrary::Result<Input> {
    let promote = u.arbitrary()?;
    let split = match u.int_in_range(0..=3u8)? {
        0 => 0,
        1 => u16::MAX,
        _ => u.arbitrary()?,
    };
    let mut headers = Vec::new();
    u.arbitrary_loop(None, Some(16), |u| {
        headers.push(header(u)?);
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    Ok(Input {
        promote,
        split,
        headers,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(input) = input(&mut u) {
        checks::check(&input);
    }
});
