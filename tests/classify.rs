//! `functions/classify`, the inference example: a small neural network trained at build
//! time on scikit-learn's 8x8 digits (functions/classify/train.py), served as an event
//! handler. On the quarter of the images held back from training, sent in batches through
//! a real host, it must be right more than 90 % of the time; a bad event is the function's
//! error (its reason goes to the guest's stderr).

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::Host;

/// The held-back images and their labels, as train.py wrote them.
fn held_back() -> (Vec<serde_json::Value>, Vec<u64>) {
    let path = common::repo().join("functions/classify/build/test.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: functions/build.sh trains classify and writes it",
            path.display()
        )
    });
    let t: serde_json::Value = serde_json::from_str(&text).unwrap();
    let images = t["images"].as_array().unwrap().clone();
    let labels = t["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect();
    (images, labels)
}

#[test]
fn classify_recognises_held_back_digits_in_batches() {
    let (images, labels) = held_back();
    assert!(images.len() >= 400, "{} held back", images.len());
    let h = Host::start(&["classify"]);
    let mut right = 0usize;
    for (batch, want) in images.chunks(50).zip(labels.chunks(50)) {
        let r = h.post("/classify", &serde_json::to_vec(batch).unwrap());
        assert_eq!(r.status, 200, "{}", r.text());
        let out: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let got = out["labels"].as_array().unwrap();
        let scores = out["scores"].as_array().unwrap();
        assert_eq!(
            (got.len(), scores.len()),
            (batch.len(), batch.len()),
            "{out}"
        );
        assert!(scores
            .iter()
            .all(|s| (0.0..=1.0).contains(&s.as_f64().unwrap())));
        right += got
            .iter()
            .zip(want)
            .filter(|(g, w)| g.as_u64() == Some(**w))
            .count();
    }
    let accuracy = right as f64 / images.len() as f64;
    assert!(
        accuracy > 0.9,
        "accuracy {accuracy:.3} on {} images",
        images.len()
    );

    // Bad events: the function's error, in Lambda's shape on the Invoke API.
    let pixels = |n: usize, v: &str| format!("[[{}]]", vec![v; n].join(","));
    for event in [
        r#"{"images": 1}"#.to_string(),
        pixels(63, "1"),
        pixels(65, "1"),
        pixels(64, "17"),
        pixels(64, "x"),
        format!("{}]", pixels(64, "1")),
    ] {
        let r = h.invoke("classify", event.as_bytes());
        assert_eq!(r.status, 200, "{event}: {}", r.text());
        assert_eq!(
            r.header("x-amz-function-error"),
            Some("Unhandled"),
            "{event}"
        );
        assert!(
            r.text().contains("Runtime.ExitError"),
            "{event}: {}",
            r.text()
        );
    }
    // And a good one still answers, one image at a time as well as fifty.
    let one = h.invoke("classify", &serde_json::to_vec(&images[..1]).unwrap());
    assert!(
        one.header("x-amz-function-error").is_none(),
        "{}",
        one.text()
    );
    assert!(one.text().starts_with("{\"labels\":["), "{}", one.text());
}

/// The batch job of the async issue, end to end: 10,000 images sent as asynchronous events,
/// one in 500 of them malformed, with an on-failure destination. The pool grows with the
/// backlog, and every event is accounted for: succeeded + dead-lettered = sent.
#[test]
fn ten_thousand_images_as_events_are_all_accounted_for() {
    const SENT: usize = 10_000;
    const BAD_EVERY: usize = 500;
    let (images, _) = held_back();
    let h = Host::start_custom(&["classify"], "", &|m| {
        common::replace_table(
            &m,
            "async",
            "max_retry_attempts = 0\non_failure = \"arn:aws:sqs:us-east-1:000000000000:classify-failed\"",
        )
    });
    let addr = h.addr.clone();
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| {
        for worker in 0..4 {
            let (addr, images) = (&addr, &images);
            s.spawn(move || {
                for i in (worker..SENT).step_by(4) {
                    let body = if i % BAD_EVERY == 0 {
                        b"[[1, 2, 3]]".to_vec()
                    } else {
                        serde_json::to_vec(&[&images[i % images.len()]]).unwrap()
                    };
                    let r = common::http(
                        addr,
                        "POST",
                        "/2015-03-31/functions/classify/invocations",
                        &[("x-amz-invocation-type", "Event")],
                        &body,
                    );
                    assert_eq!(r.status, 202, "event {i}: {}", r.text());
                }
            });
        }
    });
    let sent_in = t0.elapsed();
    let mut most = 0;
    let queue = || {
        let r = h.admin("GET", "/admin/v1/status");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["function"] == "classify")
            .cloned()
            .unwrap()
    };
    common::wait_until(
        "the batch drained",
        std::time::Duration::from_secs(300),
        || {
            most = most.max(common::num(&h, "classify", "instances"));
            let q = queue();
            q["queued"] == 0 && q["in_flight"] == 0
        },
    );
    let took = t0.elapsed();
    let q = queue();
    let bad = SENT / BAD_EVERY;
    let (code, out, err) = h.cli(&["dlq", "list", "classify", "--json"]);
    assert_eq!(code, 0, "{err}");
    let letters: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(q["succeeded"].as_u64(), Some((SENT - bad) as u64), "{q}");
    assert_eq!(letters.len(), bad, "every malformed event is dead-lettered");
    assert!(letters.iter().all(|l| l["condition"] == "RetriesExhausted"
        && l["destination"] == "arn:aws:sqs:us-east-1:000000000000:classify-failed"));
    assert_eq!(
        q["succeeded"].as_u64().unwrap() as usize + letters.len(),
        SENT
    );
    assert!(
        most > 1,
        "the pool grew with the backlog (at most {most} instance)"
    );
    eprintln!(
        "batch: {SENT} events accepted in {sent_in:?}, all ended in {took:?} ({:.0} events/s), \
         at most {most} instances, {} dead-lettered",
        SENT as f64 / took.as_secs_f64(),
        letters.len()
    );
}
