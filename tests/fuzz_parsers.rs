//! A seeded fuzz of the parsers that read what a Lambda client sends: the zip package
//! reader, the event-invoke config body and the package-to-manifest step. Each mutation of
//! a valid input (flipped, inserted, deleted and truncated bytes, spliced pieces) must be
//! answered with a value or an error, never a panic, and an error must say what is wrong.
//! Seeded, so a failure names the case that reproduces it; CI runs 3,000 cases per parser
//! (`SURGE_FUZZ_CASES` for more).

use std::io::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use surge::events::config::InvokeConfig;
use surge::registry::package::{manifest_text, LambdaFields, Package};

fn cases() -> usize {
    std::env::var("SURGE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..rng.gen_range(1..8) {
        let at = if b.is_empty() {
            0
        } else {
            rng.gen_range(0..b.len())
        };
        match rng.gen_range(0..6) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.gen_range(0..8),
            1 => b.insert(at, rng.gen()),
            2 if !b.is_empty() => {
                b.remove(at);
            }
            3 => b.truncate(at),
            4 if !b.is_empty() => {
                b[at] = *[0u8, 0xff, b'"', b'{', b'/', b'.']
                    .get(rng.gen_range(0..6))
                    .unwrap()
            }
            _ => {
                // Splice a piece of the input elsewhere (duplicated headers, nested objects).
                let from = rng.gen_range(0..input.len().max(1));
                let len = rng
                    .gen_range(0..32)
                    .min(input.len() - from.min(input.len()));
                let piece = input[from..from + len].to_vec();
                let at = at.min(b.len());
                b.splice(at..at, piece);
            }
        }
    }
    b
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn the_zip_reader_never_panics_on_a_mutated_package() {
    let seeds = [
        zip_of(&[
            ("fn.wasm", b"\0asm\x01\0\0\0"),
            ("function.toml", b"name = \"f\"\nhandler = \"fn.wasm\"\n"),
        ]),
        zip_of(&[("a/b.wasm", &[7u8; 300]), ("README.md", b"hello")]),
    ];
    let mut rng = StdRng::seed_from_u64(14);
    let (mut ok, mut errors) = (0, 0);
    for case in 0..cases() {
        let input = mutate(&mut rng, &seeds[case % seeds.len()]);
        let r = std::panic::catch_unwind(|| Package::open(&input).map(|p| p.wasm.len()));
        match r {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty(), "case {case}: an empty error");
                errors += 1;
            }
            Err(_) => panic!("case {case}: Package::open panicked on {input:?}"),
        }
    }
    assert!(errors > 0, "the mutations reach the error paths");
    eprintln!("zip reader: {ok} read, {errors} refused, 0 panics");
}

#[test]
fn the_lambda_json_parsers_never_panic_on_mutated_bodies() {
    let seeds: [&[u8]; 3] = [
        br#"{"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 120, "DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:lambda:us-east-1:000000000000:function:sink"}, "OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:dlq"}}}"#,
        br#"{"DestinationConfig": {"OnFailure": {"Destination": ""}}}"#,
        b"{}",
    ];
    let mut rng = StdRng::seed_from_u64(15);
    let mut refused = 0;
    for case in 0..cases() {
        let input = mutate(&mut rng, seeds[case % seeds.len()]);
        match std::panic::catch_unwind(|| InvokeConfig::from_request(&input)) {
            Ok(Ok(c)) => {
                // What is accepted is in Lambda's bounds.
                assert!(
                    c.maximum_retry_attempts.is_none_or(|r| r <= 2),
                    "case {case}"
                );
                assert!(
                    c.maximum_event_age_in_seconds
                        .is_none_or(|a| (60..=21_600).contains(&a)),
                    "case {case}"
                );
            }
            Ok(Err(e)) => {
                assert!(!e.is_empty(), "case {case}");
                refused += 1;
            }
            Err(_) => panic!(
                "case {case}: InvokeConfig::from_request panicked on {:?}",
                String::from_utf8_lossy(&input)
            ),
        }
    }
    assert!(refused > 0);

    // A package's manifest, mutated, laid under Lambda's fields: a manifest text or an
    // error naming function.toml.
    let manifest =
        b"name = \"f\"\nhandler = \"fn.wasm\"\n[limits]\nmemory = \"64Mi\"\n[env]\nA = \"1\"\n";
    let fields = LambdaFields {
        memory_mb: Some(256),
        env: Some([("B".to_string(), "2".to_string())].into()),
        ..Default::default()
    };
    for case in 0..cases() {
        let input = mutate(&mut rng, manifest);
        let text = String::from_utf8_lossy(&input).to_string();
        match std::panic::catch_unwind(|| manifest_text(Some(&text), "f", Some("fn.wasm"), &fields))
        {
            Ok(Ok(out)) => assert!(out.contains("name = \"f\""), "case {case}: {out}"),
            Ok(Err(e)) => assert!(
                e.to_string().starts_with("function.toml"),
                "case {case}: {e}"
            ),
            Err(_) => panic!("case {case}: manifest_text panicked on {text:?}"),
        }
    }
}
