//! Copies the dashboard's chart library (uPlot, from the npm registry: its version and
//! hash pinned in src/gateway/dashboard/package-lock.json) into OUT_DIR, where the page
//! embeds it. `scripts/setup.sh` installs it (`npm ci --prefix src/gateway/dashboard`).

use std::path::Path;

fn main() {
    let dir = Path::new("src/gateway/dashboard/node_modules/uplot/dist");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rerun-if-changed=src/gateway/dashboard/node_modules/uplot/dist");
    println!("cargo:rerun-if-changed=src/gateway/dashboard/package-lock.json");
    for file in ["uPlot.iife.min.js", "uPlot.min.css"] {
        let from = dir.join(file);
        if let Err(e) = std::fs::copy(&from, Path::new(&out).join(file)) {
            panic!(
                "{}: {e}. The dashboard embeds uPlot from the npm registry: run \
                 `npm ci --prefix src/gateway/dashboard` (scripts/setup.sh does).",
                from.display()
            );
        }
    }
}
