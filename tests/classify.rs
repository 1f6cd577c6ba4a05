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
