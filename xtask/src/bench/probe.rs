//! One probe against `curl`.

#[allow(clippy::wildcard_imports)]
use super::*;

/// One probe vs `curl`, as whole processes, interleaved.
pub(super) fn probe(
    _root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
    raw: &mut Raw,
) -> Result<Vec<Row>, String> {
    let hub = Hub::start(release)?;
    let url = format!("http://{}/api/health", hub.addr);
    let which_curl = output("sh", &["-c", "command -v curl"]).map_err(|_| {
        "curl is missing: apt-get install -y --no-install-recommends curl".to_owned()
    })?;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..plan.process_runs {
        let mut p = Command::new(release.join("cutover-probe"));
        p.args(["run", "--url", &url]);
        let mut c = Command::new(&which_curl);
        c.args(["-fsS", "-o", "/dev/null", &url]);
        if i % 2 == 0 {
            ours.push(time(&mut p)?);
            theirs.push(time(&mut c)?);
        } else {
            theirs.push(time(&mut c)?);
            ours.push(time(&mut p)?);
        }
    }
    let (mo, mt) = (median(&ours), median(&theirs));
    let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
    let ratio = mo / mt;
    raw.insert(
        "probe".to_owned(),
        serde_json::json!({"probe_s": ours, "curl_s": theirs, "ratio_of_medians": ratio}),
    );
    let _ = writeln!(
        details,
        "### Probe vs curl\n\n`cutover-probe run --url URL` vs `curl -fsS -o /dev/null URL` \
         against the demo hub's /api/health (release build), {} interleaved pairs, whole \
         processes, wall time.\n\n| | median (ms) | min–max (ms) |\n|---|---|---|\n\
         | cutover-probe | {:.2} | {} |\n| curl | {:.2} | {} |\n",
        plan.process_runs,
        mo * 1000.0,
        spread(&ours.iter().map(|s| s * 1000.0).collect::<Vec<_>>(), 2),
        mt * 1000.0,
        spread(&theirs.iter().map(|s| s * 1000.0).collect::<Vec<_>>(), 2),
    );
    let ok = ratio <= 1.5;
    Ok(vec![Row {
        goal: "one probe ≤ 1.5× `curl`'s wall time (whole processes)".to_owned(),
        measured: format!(
            "{ratio:.2}× ({:.1} ms vs {:.1} ms, ratio of medians){}",
            mo * 1000.0,
            mt * 1000.0,
            fail_words(ok, || format!(
                "one cutover-probe run took {ratio:.1}× as long as one curl, above 1.5×"
            ))
        ),
        runs: plan.process_runs.to_string(),
        spread: spread(&ratios, 2),
        verdict: pass(ok),
    }])
}
