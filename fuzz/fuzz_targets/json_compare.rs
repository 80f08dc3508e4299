//! Fuzzes `JsonCompare` with arbitrary documents (mostly valid JSON) and
//! settings.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};

#[path = "../checks/json_compare.rs"]
mod checks;

use checks::{Doc, Input, Settings};

const KEYS: &[&str] = &["a", "b", "x", "id", "*", "~", "/", "a/b", "m~0", ""];

fn key(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(if u.ratio(1, 8)? {
        String::arbitrary(u)?
    } else {
        (*u.choose(KEYS)?).to_owned()
    })
}

fn number(u: &mut Unstructured<'_>) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Value::from(u.int_in_range(-3i64..=3)?),
        1 => Value::from(i64::arbitrary(u)?),
        2 => Value::from(u64::arbitrary(u)?),
        3 => Value::from(f64::from(u.int_in_range(-8i8..=8)?) / 4.0),
        _ => Number::from_f64(f64::arbitrary(u)?).map_or(Value::Null, Value::Number),
    })
}

fn value(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let leaf = depth == 0 || u.is_empty();
    Ok(match u.int_in_range(0..=if leaf { 3u8 } else { 5 })? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(u)?,
        3 => Value::String(key(u)?),
        4 => {
            let mut items = Vec::new();
            u.arbitrary_loop(None, Some(8), |u| {
                items.push(value(u, depth - 1)?);
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
            Value::Array(items)
        }
        _ => {
            let mut map = Map::new();
            u.arbitrary_loop(None, Some(6), |u| {
                map.insert(key(u)?, value(u, depth - 1)?);
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
            Value::Object(map)
        }
    })
}

fn doc(u: &mut Unstructured<'_>) -> arbitrary::Result<Doc> {
    Ok(if u.ratio(1, 6)? {
        Doc::Raw(Vec::<u8>::arbitrary(u)?)
    } else {
        Doc::Json {
            value: value(u, 5)?,
            pretty: u.arbitrary()?,
        }
    })
}

fn pointer(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    if u.ratio(1, 10)? {
        return String::arbitrary(u);
    }
    let mut p = String::new();
    for _ in 0..u.int_in_range(0..=3u8)? {
        p.push('/');
        p.push_str(u.choose(&["a", "b", "x", "*", "0", "1", "~0", "~1", "a~1b", "m~00"])?);
    }
    Ok(p)
}

fn tolerance(u: &mut Unstructured<'_>) -> arbitrary::Result<f64> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => 0.0,
        1 => f64::from(u.int_in_range(0..=8u8)?) / 4.0,
        2 => f64::from(u16::arbitrary(u)?) / 1000.0,
        3 => *u.choose(&[f64::NAN, f64::INFINITY, -1.0, 1e-300, 1e300])?,
        _ => f64::arbitrary(u)?,
    })
}

fn settings(u: &mut Unstructured<'_>) -> arbitrary::Result<Settings> {
    let mut s = Settings {
        abs: tolerance(u)?,
        rel: tolerance(u)?,
        unordered: u.arbitrary()?,
        max_diffs: usize::from(u.int_in_range(0..=40u8)?),
        ..Settings::default()
    };
    for _ in 0..u.int_in_range(0..=2u8)? {
        s.ignore.push(pointer(u)?);
    }
    for _ in 0..u.int_in_range(0..=2u8)? {
        s.only.push(pointer(u)?);
    }
    for _ in 0..u.int_in_range(0..=2u8)? {
        s.tolerance_at
            .push((pointer(u)?, tolerance(u)?, tolerance(u)?));
    }
    Ok(s)
}

fn input(u: &mut Unstructured<'_>) -> arbitrary::Result<Input> {
    let settings = settings(u)?;
    let primary = doc(u)?;
    // Often a variation of the primary: the same value, or one with arrays
    // reversed, so matches and near-matches are common.
    let shadow = match (u.int_in_range(0..=3u8)?, &primary) {
        (0, Doc::Json { value, pretty }) => Doc::Json {
            value: value.clone(),
            pretty: !pretty,
        },
        (1, Doc::Json { value, pretty }) => Doc::Json {
            value: checks::reverse_arrays(value),
            pretty: *pretty,
        },
        _ => doc(u)?,
    };
    let other_status = u.ratio(1, 8)?;
    let deep = if u.ratio(1, 8)? {
        u.int_in_range(1..=600u16)?
    } else {
        0
    };
    Ok(Input {
        settings,
        primary,
        shadow,
        other_status,
        deep,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(input) = input(&mut u) {
        checks::check(&input);
    }
});
