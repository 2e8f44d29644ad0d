//! The backup rows: cutover-backup (gzip, zstd) against `tar | pigz`, `pigz -dc | tar -x`.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The release `cutover-backup`: create (gzip, zstd) against `tar -cf - | pigz -pN -6` and
/// restore + verify against `pigz -dc | tar -xf -`, side by side on the same tree, rotating
/// which tool goes first; single-threaded `tar -czf`/`tar -xzf` and `tar | zstd -TN -3` are
/// context rows of the details table.
pub(super) fn backup(
    _root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
    raw: &mut Raw,
) -> Result<Vec<Row>, String> {
    let size = plan.backup_mb.to_string();
    let runs = plan.backup_runs.to_string();
    let work = TempDir::new("backup")?;
    let doc = super::backup_run::measure_in(
        &release.join("cutover-backup"),
        &work.path,
        u64::from(plan.backup_mb),
        plan.backup_runs as usize,
    )?;
    drop(work);
    raw.insert("backup".to_owned(), doc.clone());
    let num = |p: &str| doc.pointer(p).and_then(serde_json::Value::as_f64);
    let need = |p: &str| num(p).ok_or_else(|| format!("cutover-backup bench JSON lacks {p}"));
    let list = |p: &str| {
        doc.pointer(p)
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(serde_json::Value::as_f64)
                    .collect::<Vec<f64>>()
            })
            .unwrap_or_default()
    };
    let per_round =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
    let cores = num("/cores").unwrap_or(1.0);
    let pigz = format!("`tar -cf - | pigz -p{cores:.0} -6`");
    // Inside a table cell a pipe must be escaped, even in code.
    let pigz_cell = pigz.replace('|', "\\|");
    let (c_gz, c_zst, c_pigz) = (
        list("/create/gzip/s"),
        list("/create/zstd/s"),
        list("/create/pigz/s"),
    );
    let (r_gz, r_pigz) = (list("/restore/gzip/s"), list("/restore/pigz/s"));
    let (m_gz, m_zst, m_pigz) = (
        need("/create/gzip/median_s")?,
        need("/create/zstd/median_s")?,
        need("/create/pigz/median_s")?,
    );
    let (mr_gz, mr_pigz) = (
        need("/restore/gzip/median_s")?,
        need("/restore/pigz/median_s")?,
    );
    let gzip_ratio = need("/ratios/create_gzip_vs_pigz")?;
    let zstd_speedup = need("/ratios/create_zstd_speedup_vs_pigz")?;
    let size_ratio = need("/ratios/size_gzip_vs_pigz")?;
    let zstd_size = need("/ratios/size_zstd_vs_pigz")?;
    let restore_ratio = need("/ratios/restore_gzip_vs_pigz")?;
    let files = num("/tree/files").unwrap_or(0.0);

    let _ = writeln!(
        details,
        "### Backup\n\nThe release `cutover-backup create`/`restore` as whole processes \
         ({runs} rounds), on a generated tree of {files:.0} mixed files ({size} MiB: two thirds text-like, one third random), every tool \
         run on the same tree in each round, the order rotated each round. pigz is the real peer \
         of cutover's parallel gzip ({pigz}, as many threads as CPUs); `tar -czf` (one core) and \
         `tar -cf - | zstd -T{cores:.0} -3` are context. The restores unpack cutover's own archives \
         (pigz and tar read its gzip archive: the same bytes in); cutover's restore also checks \
         every entry against the manifest, verifies the sidecar, fsyncs and swaps atomically.\n\n\
         | | per round (s) | median (s) | archive (bytes) |\n|---|---|---|---|"
    );
    for (label, key) in [
        ("create: cutover-backup gzip", "/create/gzip"),
        ("create: cutover-backup zstd", "/create/zstd"),
        ("create: `tar -cf - \\| pigz -6`", "/create/pigz"),
        ("create: `tar -czf` (context)", "/create/tar_czf"),
        (
            "create: `tar -cf - \\| zstd -3` (context)",
            "/create/zstd_cli",
        ),
        (
            "restore + verify: cutover-backup, gzip archive",
            "/restore/gzip",
        ),
        (
            "restore + verify: cutover-backup, zstd archive",
            "/restore/zstd",
        ),
        ("restore: `pigz -dc \\| tar -xf -`", "/restore/pigz"),
        ("restore: `tar -xzf` (context)", "/restore/tar_xzf"),
    ] {
        let _ = writeln!(
            details,
            "| {label} | {} | {:.2} | {:.0} |",
            join(&list(&format!("{key}/s")), 2),
            num(&format!("{key}/median_s")).unwrap_or(f64::NAN),
            num(&format!("{key}/bytes")).unwrap_or(f64::NAN),
        );
    }
    let _ = writeln!(
        details,
        "\nContext ratios: gzip create {:.2}× `tar -czf`; zstd create {:.2}× the zstd CLI's time, \
         archive {:.3}× its size and {:.3}× pigz's; zstd restore {:.2}× `pigz -dc | tar -xf -`; \
         gzip restore {:.2}× `tar -xzf`.",
        num("/ratios/create_gzip_vs_tar_czf").unwrap_or(f64::NAN),
        num("/ratios/create_zstd_vs_zstd_cli").unwrap_or(f64::NAN),
        num("/ratios/size_zstd_vs_zstd_cli").unwrap_or(f64::NAN),
        zstd_size,
        num("/ratios/restore_zstd_vs_pigz").unwrap_or(f64::NAN),
        num("/ratios/restore_gzip_vs_tar_xzf").unwrap_or(f64::NAN),
    );

    let pct = |r: f64| (r - 1.0) * 100.0;
    let gzip_ok = gzip_ratio <= 1.0;
    let size_ok = (size_ratio - 1.0).abs() <= 0.02;
    let zstd_ok = zstd_speedup >= 5.0;
    let restore_ok = restore_ratio <= 1.0;
    // A FAIL says in words what missed and by how much.
    let because = |ok: bool, why: String| {
        if ok {
            String::new()
        } else {
            format!(" — FAIL: {why}")
        }
    };
    Ok(vec![
        Row {
            goal: format!("backup create (gzip) ≤ 1.0× {pigz_cell} wall time, same tree"),
            measured: format!(
                "{gzip_ratio:.2}× ({m_gz:.2} s vs {m_pigz:.2} s, ratio of medians){}",
                because(
                    gzip_ok,
                    format!(
                        "cutover-backup's gzip create took {:.0} % longer than pigz",
                        pct(gzip_ratio)
                    )
                )
            ),
            runs: runs.clone(),
            spread: spread(&per_round(&c_gz, &c_pigz), 2),
            verdict: pass(gzip_ok),
        },
        Row {
            goal: "gzip archive within 2 % of pigz -6's size".to_owned(),
            measured: format!(
                "{size_ratio:.3}× ({:+.1} %){}",
                pct(size_ratio),
                because(
                    size_ok,
                    format!(
                        "cutover's gzip archive is {:.1} % {} than pigz's",
                        pct(size_ratio).abs(),
                        if size_ratio > 1.0 {
                            "larger"
                        } else {
                            "smaller"
                        }
                    )
                )
            ),
            runs: "1 (deterministic)".to_owned(),
            spread: "-".to_owned(),
            verdict: pass(size_ok),
        },
        Row {
            goal: format!("backup create (zstd) ≥ 5× faster than {pigz_cell}"),
            measured: format!(
                "{zstd_speedup:.1}× faster ({m_zst:.2} s vs {m_pigz:.2} s, ratio of medians; \
                 archive {:+.1} % vs pigz's){}",
                pct(zstd_size),
                because(
                    zstd_ok,
                    format!("zstd create is only {zstd_speedup:.1}× faster than pigz, short of 5×")
                )
            ),
            runs: runs.clone(),
            spread: spread(&per_round(&c_pigz, &c_zst), 1),
            verdict: pass(zstd_ok),
        },
        Row {
            goal: "restore + verify (gzip) ≤ 1.0× `pigz -dc \\| tar -xf -`".to_owned(),
            measured: format!(
                "{restore_ratio:.2}× ({mr_gz:.2} s vs {mr_pigz:.2} s, ratio of medians){}",
                because(
                    restore_ok,
                    format!(
                        "cutover-backup's restore took {:.0} % longer than pigz and tar",
                        pct(restore_ratio)
                    )
                )
            ),
            runs,
            spread: spread(&per_round(&r_gz, &r_pigz), 2),
            verdict: pass(restore_ok),
        },
    ])
}
