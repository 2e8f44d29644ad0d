//! Pipeline logic against the fakes: every phase failure triggers the right rollback, a failed
//! rollback is reported as such, interrupted operations recover, retention keeps what it must.

use std::time::Duration;

use crate::fakes::FakeWorld;
use crate::{DeployManifest, Deployer, JournalEntry, Operation, Outcome, Phase, Slot};

const BLUE: &str = "127.0.0.1:17000";
const GREEN: &str = "127.0.0.1:17001";

fn manifest(root: &std::path::Path, strategy: &str, extra: &str) -> DeployManifest {
    let text = format!(
        r#"
[service]
name = "hub"
build = ["make"]
start = ["app", "{{release_id}}", "{{port}}"]
port = 17000
standby_port = 17001
secrets = {{ API_KEY = "env:HUB_API_KEY" }}
[layout]
root = "{root}"
keep_releases = 3
shared = ["data/"]
[proxy]
kind = "nginx"
listen_http = ["127.0.0.1:18080"]
control_listen = "127.0.0.1:9"
[deploy]
strategy = "{strategy}"
backup = false
drain = "0s"
{extra}
"#,
        root = root.display()
    );
    DeployManifest::from_str(root.join("cutover.toml"), &text).unwrap()
}

fn setup(strategy: &str, extra: &str) -> (tempfile::TempDir, FakeWorld, Deployer) {
    let tmp = tempfile::tempdir().unwrap();
    let world = FakeWorld::new();
    let deployer = Deployer::new(manifest(tmp.path(), strategy, extra), world.environment());
    (tmp, world, deployer)
}

fn deploy(d: &Deployer) -> crate::DeployReport {
    d.deploy(Duration::ZERO).unwrap()
}

#[test]
fn blue_green_deploys_alternate_slots_and_stop_the_old_one() {
    let (_tmp, world, d) = setup("blue-green", "keep_standby = false");
    let first = deploy(&d);
    assert_eq!(first.outcome, Outcome::Deployed, "{first:?}");
    assert_eq!(first.slot, Slot::Blue);
    assert_eq!(world.upstream(), Some(BLUE.parse().unwrap()));
    let second = deploy(&d);
    assert_eq!(second.outcome, Outcome::Deployed, "{second:?}");
    assert_eq!(second.slot, Slot::Green);
    assert_eq!(second.previous.as_deref(), Some(first.release.as_str()));
    assert_eq!(world.upstream(), Some(GREEN.parse().unwrap()));
    assert_eq!(
        d.layout().current().as_deref(),
        Some(second.release.as_str())
    );
    let running = world.running();
    assert_eq!(running.keys().collect::<Vec<_>>(), ["hub-green"]);
    // The old one was stopped only after traffic moved.
    let events = world.events();
    let switched = events
        .iter()
        .position(|e| e == &format!("switch {GREEN}"))
        .unwrap();
    let stopped = events.iter().rposition(|e| e == "stop hub-blue").unwrap();
    assert!(switched < stopped, "{events:?}");
    let phases: Vec<&str> = second.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(
        phases,
        [
            "preflight",
            "backup",
            "build",
            "switch",
            "validate",
            "stable",
            "commit"
        ]
    );
    assert!(second.release > first.release, "ids sort by time");
    let audit = crate::audit::read(&d.layout().audit_file()).unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[1].outcome, Outcome::Deployed);
    // The fake world's source is a plain directory: copied, no commit.
    assert_eq!(audit[1].commit, None);
}

/// Each failing phase, injected after a good first deploy; the previous release must serve.
#[test]
fn every_failing_phase_rolls_back_to_the_previous_release() {
    type Fault = fn(&FakeWorld, &str);
    let faults: [(&str, &str, Fault, &str); 6] = [
        ("build", "", |w, _| w.fail_program("make"), "build"),
        ("start", "", |w, r| w.fail_start(r), "switch"),
        ("not ready", "", |w, r| w.never_ready(r), "switch"),
        (
            "switch refused",
            "",
            |w, _| w.refuse_upstream(GREEN.parse().unwrap()),
            "switch",
        ),
        ("validate", "", |w, r| w.fail_validation(r), "validate"),
        (
            "perf",
            "perf_gate = true\n[perf]\nconnections = 1\n[[perf.endpoint]]\nurl = \"/api/health\"\n",
            |w, r| w.regress(r),
            "perf",
        ),
    ];
    for strategy in ["blue-green", "restart"] {
        for (name, extra, inject, phase) in faults {
            if strategy == "restart" && name == "switch refused" {
                continue;
            }
            let (_tmp, world, d) = setup(strategy, extra);
            let first = deploy(&d);
            assert_eq!(
                first.outcome,
                Outcome::Deployed,
                "{strategy}/{name}: {first:?}"
            );
            // The next release id is predictable from the fake clock; fault it by id.
            let next = world.next_release_id();
            inject(&world, &next);
            let report = deploy(&d);
            assert_eq!(
                report.outcome,
                Outcome::RolledBack,
                "{strategy}/{name}: {report:?}"
            );
            assert_eq!(report.outcome.exit_code(), 2);
            assert!(
                report
                    .reason
                    .as_deref()
                    .unwrap_or("")
                    .starts_with(&format!("{phase} failed")),
                "{strategy}/{name}: {:?}",
                report.reason
            );
            assert_eq!(
                d.layout().current().as_deref(),
                Some(first.release.as_str()),
                "{strategy}/{name}"
            );
            let (slot, upstream) = match strategy {
                "restart" => ("hub", None),
                _ => ("hub-blue", Some(BLUE.parse().unwrap())),
            };
            assert_eq!(world.upstream(), upstream, "{strategy}/{name}");
            assert_eq!(
                world.release_of(slot, &[&first.release, &next]).as_deref(),
                Some(first.release.as_str()),
                "{strategy}/{name}: {:?}",
                world.running()
            );
            assert_eq!(
                world.running().len(),
                1,
                "{strategy}/{name}: {:?}",
                world.running()
            );
            assert_eq!(
                report.phases.last().unwrap().phase,
                crate::audit::Step::Rollback
            );
            let status = d.status().unwrap();
            assert!(status.healthy, "{strategy}/{name}: {status:?}");
            assert_eq!(status.interrupted, None);
            // The failed release is not a rollback target later.
            world.heal();
            let third = deploy(&d);
            assert_eq!(third.outcome, Outcome::Deployed);
            assert_eq!(
                d.status().unwrap().rollback_target.as_deref(),
                Some(first.release.as_str())
            );
        }
    }
}

#[test]
fn a_failed_rollback_is_reported_with_what_is_live() {
    let (_tmp, world, d) = setup("blue-green", "");
    let first = deploy(&d);
    let next = world.next_release_id();
    world.fail_validation(&next);
    world.fail_validation(&first.release);
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::RollbackFailed, "{report:?}");
    assert_eq!(report.outcome.exit_code(), 4);
    assert!(report.live.contains("rollback failed"), "{}", report.live);
    assert!(report.live.contains("current ->"), "{}", report.live);
    assert!(report.live.contains("proxy upstream"), "{}", report.live);
}

#[test]
fn a_first_deploy_that_fails_leaves_nothing_deployed() {
    let (_tmp, world, d) = setup("blue-green", "");
    let next = world.next_release_id();
    world.fail_validation(&next);
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
    assert_eq!(d.layout().current(), None);
    assert!(world.running().is_empty());
}

#[test]
fn preflight_failure_aborts_before_anything_changes() {
    let (tmp, world, d) = setup(
        "restart",
        "[preflight]\n[[preflight.check]]\nkind = \"files-exist\"\nall_of = [\"missing.json\"]\n",
    );
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::Aborted, "{report:?}");
    assert_eq!(report.outcome.exit_code(), 2);
    assert!(report.reason.unwrap().contains("preflight failed"));
    assert!(world.running().is_empty());
    assert!(d.layout().list_releases().unwrap().is_empty());
    std::fs::write(tmp.path().join("missing.json"), "{}").unwrap();
    assert_eq!(deploy(&d).outcome, Outcome::Deployed);
}

#[test]
fn rollback_goes_to_the_last_good_release_or_the_one_named() {
    let (_tmp, world, d) = setup("blue-green", "");
    let r1 = deploy(&d).release;
    let r2 = deploy(&d).release;
    let r3 = deploy(&d).release;
    let back = d.rollback(None, Duration::ZERO).unwrap();
    assert_eq!(back.outcome, Outcome::Restored, "{back:?}");
    assert_eq!(back.release, r2);
    assert_eq!(d.layout().current().as_deref(), Some(r2.as_str()));
    let phases: Vec<&str> = back.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(phases, ["switch", "validate", "commit"]);
    let to = d.rollback(Some(&r1), Duration::ZERO).unwrap();
    assert_eq!(to.outcome, Outcome::Restored);
    assert_eq!(to.outcome.exit_code(), 0);
    // The audit says what each operation was and how it ended, as enums spelled as ever.
    let audit = crate::audit::read(&d.layout().audit_file()).unwrap();
    let last = audit.last().unwrap();
    assert_eq!(
        (last.operation, last.outcome, last.strategy),
        (
            Operation::Rollback,
            Outcome::Restored,
            crate::StrategyKind::BlueGreen
        )
    );
    let line = std::fs::read_to_string(d.layout().audit_file()).unwrap();
    let line = line.lines().last().unwrap();
    assert!(line.contains(r#""operation":"rollback""#), "{line}");
    assert!(line.contains(r#""outcome":"restored""#), "{line}");
    assert!(line.contains(r#""strategy":"blue-green""#), "{line}");
    assert!(line.contains(r#""phase":"switch""#), "{line}");
    assert_eq!(
        world
            .release_of(&to.slot.service_name("hub"), &[&r1, &r2, &r3])
            .as_deref(),
        Some(r1.as_str())
    );
    assert!(d.rollback(Some("nope"), Duration::ZERO).is_err());
    assert!(
        d.rollback(Some(&r1), Duration::ZERO).is_err(),
        "already current"
    );
}

#[test]
fn an_interrupted_deploy_before_commit_rolls_back_and_after_commit_rolls_forward() {
    for commit_started in [false, true] {
        let (_tmp, world, d) = setup("blue-green", "");
        let r1 = deploy(&d).release;
        let r2 = deploy(&d).release; // green, serving
        // Rewind to "r2 was switched in but not committed": traffic and current on r2, blue
        // still running r1, state still says blue.
        let mut state = d.layout().load_state().unwrap();
        state.good.retain(|g| g != &r2);
        state.slot = Some(Slot::Blue);
        d.layout().save_state(&state).unwrap();
        let env = FakeWorld::environment(&world);
        let r1_spec = Deployer::new(d.manifest().clone(), env)
            .spec_for(&d.layout().read_record(&r1).unwrap(), Slot::Blue)
            .unwrap();
        process_control::ProcessManager::start(&crate::fakes::FakeProcs(world.clone()), &r1_spec)
            .unwrap();
        let journal = crate::Journal::new(d.layout().journal_file());
        journal
            .begin(&JournalEntry::Begin {
                at: "t".into(),
                op: Operation::Deploy,
                release: r2.clone(),
                previous: Some(r1.clone()),
                from_slot: Some(Slot::Blue),
                standby: None,
                to_slot: Slot::Green,
            })
            .unwrap();
        for phase in [Phase::Switch, Phase::Validate] {
            journal
                .append(&JournalEntry::PhaseStarted {
                    at: "t".into(),
                    phase,
                })
                .unwrap();
            journal
                .append(&JournalEntry::PhaseDone {
                    at: "t".into(),
                    phase,
                })
                .unwrap();
        }
        if commit_started {
            journal
                .append(&JournalEntry::PhaseStarted {
                    at: "t".into(),
                    phase: Phase::Commit,
                })
                .unwrap();
        }
        assert!(d.status().unwrap().interrupted.is_some());
        let report = d.recover(Duration::ZERO).unwrap();
        assert!(report.healthy, "{report:?}");
        assert!(!report.was_consistent);
        // Rolled forward, r1 stays warm in blue as the standby; rolled back, green is stopped.
        let (live, slots, addr): (_, &[&str], _) = if commit_started {
            (&r2, &["hub-blue", "hub-green"], GREEN)
        } else {
            (&r1, &["hub-blue"], BLUE)
        };
        assert_eq!(
            d.layout().current().as_deref(),
            Some(live.as_str()),
            "{report:?}"
        );
        assert_eq!(world.upstream(), Some(addr.parse().unwrap()));
        assert_eq!(
            world.running().keys().collect::<Vec<_>>(),
            slots,
            "{report:?}"
        );
        let status = d.status().unwrap();
        assert!(status.healthy && status.interrupted.is_none(), "{status:?}");
        assert_eq!(
            status.standby.as_ref().map(|s| s.release.as_str()),
            commit_started.then_some(r1.as_str()),
            "{status:?}"
        );
        // A second recover finds nothing to do.
        assert!(d.recover(Duration::ZERO).unwrap().was_consistent);
    }
}

#[test]
fn recover_restarts_a_current_release_that_is_not_running() {
    let (_tmp, world, d) = setup("restart", "");
    let r1 = deploy(&d).release;
    world.kill_all();
    assert!(!d.status().unwrap().healthy);
    let report = d.recover(Duration::ZERO).unwrap();
    assert!(report.healthy && !report.was_consistent, "{report:?}");
    assert_eq!(
        world.release_of("hub", &[&r1]).as_deref(),
        Some(r1.as_str())
    );
}

#[test]
fn a_failing_hook_fails_its_phase_and_hooks_see_the_variables() {
    let (_tmp, world, d) = setup(
        "restart",
        "[hooks]\nbefore_switch = [\"notify\", \"switching\"]\non_failure = [\"page\"]\n",
    );
    let r1 = deploy(&d);
    assert_eq!(r1.outcome, Outcome::Deployed);
    assert!(world.events().iter().any(|e| e == "run notify switching"));
    world.fail_program("notify");
    let r2 = deploy(&d);
    assert_eq!(r2.outcome, Outcome::RolledBack);
    assert!(r2.reason.unwrap().contains("before_switch hook"));
    assert!(world.events().iter().any(|e| e == "run page"));
}

#[test]
fn retention_keeps_the_newest_and_never_current_or_last_good() {
    let (_tmp, _world, d) = setup("blue-green", "");
    let ids: Vec<String> = (0..5).map(|_| deploy(&d).release).collect();
    assert_eq!(d.layout().list_releases().unwrap(), ids[2..].to_vec());
    // Roll back to the oldest kept one, then deploy: the current (old) release and the last
    // good one survive pruning.
    d.rollback(Some(&ids[2]), Duration::ZERO).unwrap();
    let next = deploy(&d).release;
    let kept = d.layout().list_releases().unwrap();
    assert!(kept.contains(&next) && kept.contains(&ids[2]), "{kept:?}");
    assert_eq!(kept.len(), 3, "{kept:?}");
}

#[test]
fn plan_names_secrets_and_never_resolves_them() {
    let (_tmp, _world, d) = setup("blue-green", "");
    let plan = d.plan().unwrap();
    assert_eq!(plan.secrets, ["API_KEY"]);
    let json = serde_json::to_string(&plan).unwrap();
    assert!(
        !json.contains("HUB_API_KEY"),
        "references stay out too: {json}"
    );
    assert_eq!(plan.slot, Slot::Blue);
    assert_eq!(plan.start, ["app", &plan.release, "17000"]);
}

#[test]
fn the_manifest_refuses_unknown_keys_and_impossible_values() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cutover.toml");
    let unknown =
        "[service]\nname = \"hub\"\nstart = [\"x\"]\nport = 1\n[deploy]\nstrategi = \"restart\"\n";
    let err = DeployManifest::from_str(&path, unknown).unwrap_err();
    assert_eq!(err.exit_code(), 78);
    let msg = err.to_string();
    assert!(msg.contains(":6:") && msg.contains("strategy"), "{msg}");
    let bg = "[service]\nname = \"hub\"\nstart = [\"x\"]\nport = 1\n[deploy]\nstrategy = \"blue-green\"\n";
    let err = DeployManifest::from_str(&path, bg).unwrap_err();
    assert!(err.to_string().contains("standby_port"), "{err}");
    assert_eq!(err.exit_code(), 78);
    let schema = crate::json_schema();
    assert!(schema.contains("standby_port") && schema.contains("keep_releases"));
}

#[test]
fn blue_green_keeps_the_previous_release_warm_and_rolls_back_to_it_without_a_start() {
    let (_tmp, world, d) = setup("blue-green", "");
    let r1 = deploy(&d).release;
    let r2 = deploy(&d);
    assert_eq!(r2.outcome, Outcome::Deployed, "{r2:?}");
    // r1 still runs in blue as the standby, and status says so.
    assert_eq!(
        world.running().keys().collect::<Vec<_>>(),
        ["hub-blue", "hub-green"]
    );
    let status = d.status().unwrap();
    let standby = status.standby.unwrap();
    assert_eq!(
        (standby.release.as_str(), standby.slot),
        (r1.as_str(), Slot::Blue)
    );
    assert!(standby.process.starts_with("running"), "{standby:?}");
    let before = world.events().len();
    let back = d.rollback(None, Duration::ZERO).unwrap();
    assert_eq!(back.outcome, Outcome::Restored, "{back:?}");
    assert_eq!(back.release, r1);
    let events = world.events()[before..].to_vec();
    // No stop or start of any service: a probe, the switch, and nothing else.
    assert_eq!(events, [format!("switch {BLUE}")], "{back:?}");
    assert!(
        back.phases[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("warm standby")
    );
    // r2 is now the standby in green: rolling forward again is warm too.
    let status = d.status().unwrap();
    assert_eq!(status.current.as_deref(), Some(r1.as_str()));
    assert_eq!(status.standby.unwrap().release, r2.release);
    let forward = d.rollback(Some(&r2.release), Duration::ZERO).unwrap();
    assert_eq!(forward.outcome, Outcome::Restored, "{forward:?}");
    assert_eq!(world.upstream(), Some(GREEN.parse().unwrap()));
    // The next deploy stops the standby (r1 in blue) before it starts the new release there.
    let before = world.events().len();
    let r3 = deploy(&d);
    assert_eq!(r3.outcome, Outcome::Deployed, "{r3:?}");
    let events = world.events()[before..].to_vec();
    let stop = events.iter().position(|e| e == "stop hub-blue").unwrap();
    let start = events.iter().position(|e| e == "start hub-blue").unwrap();
    assert!(stop < start, "{events:?}");
    assert_eq!(d.status().unwrap().standby.unwrap().release, r2.release);
}

#[test]
fn a_standby_that_is_not_running_is_started_cold() {
    let (_tmp, world, d) = setup("blue-green", "");
    let r1 = deploy(&d).release;
    let r2 = deploy(&d).release;
    // The standby died (OOM, a reboot of that slot): the rollback starts it and waits.
    let fakes = crate::fakes::FakeProcs(world.clone());
    process_control::ProcessManager::stop(&fakes, "hub-blue", None).unwrap();
    let before = world.events().len();
    let back = d.rollback(None, Duration::ZERO).unwrap();
    assert_eq!(back.outcome, Outcome::Restored, "{back:?}");
    assert_eq!(back.release, r1);
    let events = world.events()[before..].to_vec();
    assert!(events.iter().any(|e| e == "start hub-blue"), "{events:?}");
    assert!(
        back.phases[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("ready in slot")
    );
    assert_eq!(d.status().unwrap().standby.unwrap().release, r2);

    // A standby that runs but does not answer ready is started cold as well.
    world.never_ready(&r2);
    let forward = d.rollback(None, Duration::ZERO).unwrap();
    assert_eq!(forward.outcome, Outcome::RolledBack, "{forward:?}");
    assert!(
        world
            .events()
            .iter()
            .rev()
            .take(10)
            .any(|e| e == "start hub-green"),
        "{:?}",
        world.events()
    );
    // The failed attempt leaves r1 serving and no standby claimed.
    let status = d.status().unwrap();
    assert_eq!(status.current.as_deref(), Some(r1.as_str()));
    assert!(status.standby.is_none(), "{status:?}");
}

#[test]
fn keep_standby_false_stops_the_old_release_at_commit() {
    let (_tmp, world, d) = setup("blue-green", "keep_standby = false");
    deploy(&d);
    deploy(&d);
    assert_eq!(world.running().keys().collect::<Vec<_>>(), ["hub-green"]);
    assert!(d.status().unwrap().standby.is_none());
}

#[test]
fn a_release_whose_process_exits_fails_at_once_not_after_the_ready_timeout() {
    for strategy in ["restart", "blue-green"] {
        let (_tmp, world, d) = setup(strategy, "ready_timeout = \"30s\"");
        let r1 = deploy(&d).release;
        // Exits at once: one readiness slice, then the process manager says `failed`.
        world.exit_at_start(&world.next_release_id());
        let before = world.ready_waits();
        let report = deploy(&d);
        assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
        let reason = report.reason.unwrap();
        assert!(
            reason.contains("is failed before it became ready"),
            "{reason}"
        );
        assert!(world.ready_waits() - before <= 3, "{reason}");
        assert_eq!(d.layout().current().as_deref(), Some(r1.as_str()));

        // Runs but never answers: the wait goes on, slice after slice, to the whole budget
        // (30 s in 300 ms slices; the fake answers at once, so this takes no time).
        world.heal();
        world.never_ready(&world.next_release_id());
        let before = world.ready_waits();
        let report = deploy(&d);
        assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
        assert!(world.ready_waits() - before >= 100, "{report:?}");
        // The message gives the real attempt count and elapsed time: the whole budget.
        let reason = report.reason.unwrap();
        assert!(
            reason.contains("not ready after 100 attempts in 30.0s (ready_timeout 30s)"),
            "{reason}"
        );
    }
}

/// A restart-strategy deployer over the fakes, except that commands really run (the build
/// changes shared data), with `restore_shared_on_rollback` as given. Shared data starts "v1".
fn restoring(restore: bool) -> (tempfile::TempDir, FakeWorld, Deployer) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("shared/data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("state"), "v1\n").unwrap();
    // With the marker, the build corrupts shared data and fails.
    let build = format!(
        "if [ -f {m} ]; then echo v2 > {s}; exit 1; fi",
        m = root.join("corrupt").display(),
        s = data.join("state").display()
    );
    let text = format!(
        r#"
[service]
name = "hub"
build = ["sh", "-c", {build:?}]
start = ["app", "{{release_id}}", "{{port}}"]
port = 17000
[layout]
root = "{root}"
shared = ["data/"]
[deploy]
strategy = "restart"
restore_shared_on_rollback = {restore}
"#,
        root = root.display()
    );
    let manifest = DeployManifest::from_str(root.join("cutover.toml"), &text).unwrap();
    let world = FakeWorld::new();
    let mut env = world.environment();
    env.runner = Box::new(crate::SystemRunner);
    (tmp, world, Deployer::new(manifest, env))
}

fn shared_state(d: &Deployer) -> String {
    std::fs::read_to_string(d.layout().shared_dir().join("data/state")).unwrap()
}

#[test]
fn restore_shared_on_rollback_puts_the_pre_deploy_data_back_only_when_asked() {
    for restore in [true, false] {
        let (tmp, _world, d) = restoring(restore);
        let r1 = deploy(&d);
        assert_eq!(r1.outcome, Outcome::Deployed, "{r1:?}");
        assert_eq!(shared_state(&d), "v1\n");
        std::fs::write(tmp.path().join("corrupt"), "").unwrap();
        let r2 = deploy(&d);
        assert_eq!(r2.outcome, Outcome::RolledBack, "{r2:?}");
        let rollback = r2.phases.last().unwrap().detail.clone().unwrap();
        if restore {
            assert_eq!(shared_state(&d), "v1\n", "{rollback}");
            assert!(rollback.contains("restored shared data from"), "{rollback}");
        } else {
            assert_eq!(shared_state(&d), "v2\n", "{rollback}");
            assert!(!rollback.contains("restored"), "{rollback}");
        }
        // The release is linked to the (restored) shared directory.
        assert_eq!(d.layout().current().as_deref(), Some(r1.release.as_str()));
    }
}

#[test]
fn recover_after_a_crash_restores_shared_data_from_the_backup_named_in_the_journal() {
    for restore in [true, false] {
        let (_tmp, _world, d) = restoring(restore);
        let r1 = deploy(&d).release;
        // A deploy that made its backup, then changed shared data and was killed in build.
        let mut opts = backup_archive::CreateOptions::new(
            vec![d.layout().shared_dir()],
            d.layout().backups_dir(),
        );
        opts.id = Some("pre-r2".to_owned());
        let archive = backup_archive::create(&opts, &backup_archive::NoProgress)
            .unwrap()
            .archive;
        std::fs::write(d.layout().shared_dir().join("data/state"), "v2\n").unwrap();
        let journal = crate::Journal::new(d.layout().journal_file());
        journal
            .begin(&JournalEntry::Begin {
                at: "t".into(),
                op: Operation::Deploy,
                release: "r2".into(),
                previous: Some(r1.clone()),
                from_slot: Some(Slot::Single),
                to_slot: Slot::Single,
                standby: None,
            })
            .unwrap();
        for entry in [
            JournalEntry::PhaseStarted {
                at: "t".into(),
                phase: Phase::Backup,
            },
            JournalEntry::BackupMade {
                at: "t".into(),
                archive: archive.clone(),
            },
            JournalEntry::PhaseDone {
                at: "t".into(),
                phase: Phase::Backup,
            },
            JournalEntry::PhaseStarted {
                at: "t".into(),
                phase: Phase::Build,
            },
        ] {
            journal.append(&entry).unwrap();
        }
        let interrupted = d.status().unwrap().interrupted.unwrap();
        assert_eq!(interrupted.backup.as_deref(), Some(archive.as_path()));
        let report = d.recover(Duration::ZERO).unwrap();
        assert!(report.healthy, "{report:?}");
        let expected = if restore { "v1\n" } else { "v2\n" };
        assert_eq!(shared_state(&d), expected, "{report:?}");
        assert_eq!(d.layout().current().as_deref(), Some(r1.as_str()));
    }
}

#[test]
fn an_interrupted_rollback_to_the_standby_recovers_to_a_consistent_state() {
    for commit_started in [false, true] {
        let (_tmp, world, d) = setup("blue-green", "");
        let r1 = deploy(&d).release;
        let r2 = deploy(&d).release; // green serves, r1 warm in blue
        // A rollback to r1 switched traffic to blue and was killed before (or in) its commit.
        let journal = crate::Journal::new(d.layout().journal_file());
        journal
            .begin(&JournalEntry::Begin {
                at: "t".into(),
                op: Operation::Rollback,
                release: r1.clone(),
                previous: Some(r2.clone()),
                from_slot: Some(Slot::Green),
                to_slot: Slot::Blue,
                standby: None,
            })
            .unwrap();
        let mut phases = vec![Phase::Switch, Phase::Validate];
        if commit_started {
            phases.push(Phase::Commit);
        }
        for phase in phases {
            journal
                .append(&JournalEntry::PhaseStarted {
                    at: "t".into(),
                    phase,
                })
                .unwrap();
        }
        crate::env::Traffic::switch(
            &crate::fakes::FakeTraffic(world.clone()),
            BLUE.parse().unwrap(),
            None,
        )
        .unwrap();
        d.layout().set_current(&r1).unwrap();
        let report = d.recover(Duration::ZERO).unwrap();
        assert!(report.healthy && !report.was_consistent, "{report:?}");
        let status = d.status().unwrap();
        assert!(status.healthy && status.interrupted.is_none(), "{status:?}");
        let (live, addr) = if commit_started {
            (&r1, BLUE)
        } else {
            (&r2, GREEN)
        };
        assert_eq!(status.current.as_deref(), Some(live.as_str()), "{report:?}");
        assert_eq!(world.upstream(), Some(addr.parse().unwrap()));
        // The state names a standby only when it runs.
        if let Some(standby) = &status.standby {
            assert!(standby.process.starts_with("running"), "{status:?}");
        }
        assert!(d.recover(Duration::ZERO).unwrap().was_consistent);
    }
}

#[test]
fn a_release_that_crashes_inside_the_stability_window_is_rolled_back() {
    let (_tmp, world, d) = setup("blue-green", "stable_for = \"5s\"");
    let r1 = deploy(&d).release;
    // Ready at once, validated, then gone two checks into the window.
    world.crash_after_checks(&world.next_release_id(), 3);
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
    let reason = report.reason.unwrap();
    assert!(
        reason.starts_with("stable failed: not stable for 5s (stable_for)"),
        "{reason}"
    );
    assert_eq!(d.layout().current().as_deref(), Some(r1.as_str()));
    assert_eq!(world.upstream(), Some(BLUE.parse().unwrap()));
    // A steady release passes the same window.
    world.heal();
    let ok = deploy(&d);
    assert_eq!(ok.outcome, Outcome::Deployed, "{ok:?}");
    let stable = ok
        .phases
        .iter()
        .find(|p| p.phase == crate::audit::Step::Stable)
        .unwrap();
    assert!(
        stable
            .detail
            .as_deref()
            .unwrap()
            .starts_with("ready and unrestarted for 5s"),
        "{stable:?}"
    );
    // plan lists the window from the same steps.
    let plan = d.plan().unwrap();
    assert!(
        plan.phases.iter().any(|p| p.phase == Phase::Stable),
        "{plan:?}"
    );
}

#[test]
fn a_failed_deploy_that_took_the_standbys_slot_puts_the_standby_back() {
    let (_tmp, world, d) = setup("blue-green", "");
    let r1 = deploy(&d).release;
    let r2 = deploy(&d).release;
    assert_eq!(d.status().unwrap().standby.unwrap().release, r1);
    // The warm standby is nginx's backup server behind the live release.
    assert_eq!(world.backup(), Some(BLUE.parse().unwrap()));
    // The third deploy starts in blue, where r1 waited warm, and fails validation.
    world.fail_validation(&world.next_release_id());
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
    let rollback = report.phases.last().unwrap().detail.clone().unwrap();
    assert!(
        rollback.contains(&format!("{r1} warm again in slot blue")),
        "{rollback}"
    );
    let status = d.status().unwrap();
    assert_eq!(status.current.as_deref(), Some(r2.as_str()));
    let standby = status.standby.unwrap();
    assert_eq!(
        (standby.release.as_str(), standby.slot),
        (r1.as_str(), Slot::Blue)
    );
    assert!(standby.process.starts_with("running"), "{standby:?}");
    // So the next rollback is a switch again, not a cold start.
    let before = world.events().len();
    let back = d.rollback(None, Duration::ZERO).unwrap();
    assert_eq!(back.release, r1);
    assert!(
        !world.events()[before..]
            .iter()
            .any(|e| e.starts_with("start ")),
        "{:?}",
        &world.events()[before..]
    );
}

#[test]
fn a_first_deploy_that_fails_leaves_no_proxy_in_front_of_nothing() {
    let (_tmp, world, d) = setup("blue-green", "");
    world.fail_validation(&world.next_release_id());
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
    assert!(
        report
            .phases
            .last()
            .unwrap()
            .detail
            .as_deref()
            .unwrap()
            .contains("stopped the proxy"),
        "{report:?}"
    );
    assert_eq!(d.layout().current(), None);
    assert!(d.status().unwrap().upstream.is_none());
}

#[test]
fn recover_after_a_failed_rollback_finishes_the_rollback_and_never_promotes_the_failed_release() {
    let (_tmp, world, d) = setup("blue-green", "");
    let r1 = deploy(&d).release;
    // The new release fails validation, and so does r1 when it is put back: exit 4.
    let r2 = world.next_release_id();
    world.fail_validation(&r2);
    world.fail_validation(&r1);
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::RollbackFailed, "{report:?}");
    // The journal's end is not the end of the work: status says so.
    let pending = d.status().unwrap().interrupted.unwrap();
    assert!(
        pending.rollback_failed && !pending.commit_started,
        "{pending:?}"
    );
    // The cause is fixed; recover finishes the rollback to r1.
    world.heal();
    let fixed = d.recover(Duration::ZERO).unwrap();
    assert!(fixed.healthy && !fixed.rollback_failed, "{fixed:?}");
    assert!(
        fixed.action.starts_with(&format!("rolled back to {r1}")),
        "{fixed:?}"
    );
    assert_eq!(d.layout().current().as_deref(), Some(r1.as_str()));
    assert_eq!(world.upstream(), Some(BLUE.parse().unwrap()));
    assert!(
        !world.running().values().any(|argv| argv.contains(&r2)),
        "the failed release runs nowhere"
    );
    assert!(d.status().unwrap().interrupted.is_none());
    assert!(d.recover(Duration::ZERO).unwrap().was_consistent);
}

#[test]
fn recover_that_cannot_finish_a_failed_rollback_says_so() {
    let (_tmp, world, d) = setup("blue-green", "");
    let r1 = deploy(&d).release;
    world.fail_validation(&world.next_release_id());
    world.fail_validation(&r1);
    assert_eq!(deploy(&d).outcome, Outcome::RollbackFailed);
    // Not fixed: recover refuses to call it done, and the work stays pending.
    let again = d.recover(Duration::ZERO).unwrap();
    assert!(again.rollback_failed && !again.healthy, "{again:?}");
    assert!(d.status().unwrap().interrupted.is_some());
}

#[test]
fn status_is_not_healthy_when_users_cannot_reach_the_live_release() {
    let (_tmp, world, d) = setup("blue-green", "");
    deploy(&d);
    assert!(d.status().unwrap().healthy);
    // nginx dies: the release still answers as itself, but users reach nothing.
    crate::env::Traffic::stop(&crate::fakes::FakeTraffic(world.clone())).unwrap();
    let status = d.status().unwrap();
    assert!(!status.healthy, "{status:?}");
    assert!(
        status
            .health_reason
            .as_deref()
            .unwrap()
            .contains("proxy (nginx) is not running"),
        "{status:?}"
    );
    // recover brings the proxy back, and status agrees.
    let fixed = d.recover(Duration::ZERO).unwrap();
    assert!(fixed.healthy, "{fixed:?}");
    assert!(d.status().unwrap().healthy);
}

#[test]
fn status_names_a_proxy_that_routes_to_another_slot_than_the_live_one() {
    let (_tmp, world, d) = setup("blue-green", "");
    deploy(&d);
    // Someone pointed nginx at the idle slot by hand.
    crate::env::Traffic::switch(
        &crate::fakes::FakeTraffic(world.clone()),
        GREEN.parse().unwrap(),
        None,
    )
    .unwrap();
    let status = d.status().unwrap();
    assert!(!status.healthy, "{status:?}");
    let reason = status.health_reason.unwrap();
    assert!(
        reason.contains(&format!("nginx serves {GREEN}")),
        "{reason}"
    );
}

#[test]
fn set_env_refuses_secrets_bad_names_and_unknown_placeholders() {
    let (_tmp, _world, d) = setup("blue-green", "");
    let refused = |name: &str, value: &str| {
        let (_t, w, d) = setup("blue-green", "");
        drop(w);
        d.with_set_env([(name.to_owned(), value.to_owned())])
            .err()
            .unwrap_or_else(|| panic!("{name}={value} was accepted"))
    };
    for name in ["", "1A", "A=B", "A-B"] {
        let err = refused(name, "x");
        assert_eq!(err.exit_code(), 78, "{err}");
        assert!(err.to_string().contains("variable name"), "{err}");
    }
    let err = refused("FOO", "{relase}");
    assert!(err.to_string().contains("unknown placeholder"), "{err}");
    let err = refused("API_KEY", "x");
    assert!(
        err.to_string().contains("listed in [service] secrets"),
        "{err}"
    );
    let ok = d
        .with_set_env([("FOO".to_owned(), "{port}".to_owned())])
        .unwrap();
    let report = deploy(&ok);
    assert_eq!(report.outcome, Outcome::Deployed, "{report:?}");
    let record = ok.layout().read_record(&report.release).unwrap();
    assert_eq!(record.set_env["FOO"], "{port}");
}

#[test]
fn an_open_files_limit_above_the_hosts_ceiling_fails_preflight_naming_it() {
    let (ceiling, _) = process_control::nofile_ceiling(false).unwrap();
    let (_tmp, world, d) = setup(
        "blue-green",
        &format!("[process]\nlimits = {{ nofile = {} }}", ceiling + 1),
    );
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::Aborted, "{report:?}");
    let reason = report.reason.unwrap();
    assert!(reason.starts_with("preflight failed"), "{reason}");
    assert!(
        reason.contains(&format!("limits.nofile = {}", ceiling + 1))
            && reason.contains("RLIMIT_NOFILE"),
        "{reason}"
    );
    assert!(world.running().is_empty(), "nothing was started");
    let (_tmp, _world, d) = setup("blue-green", "[process]\nlimits = { nofile = 1024 }");
    assert_eq!(deploy(&d).outcome, Outcome::Deployed);
}

#[test]
fn the_backup_phase_sweeps_partial_archives_that_killed_backups_left() {
    let (_tmp, _world, d) = setup("blue-green", "");
    // `backup = false` in the shared manifest: this test turns it on.
    let mut m = d.manifest().clone();
    m.deploy.backup = true;
    let d = Deployer::new(m, crate::fakes::FakeWorld::new().environment());
    std::fs::create_dir_all(d.layout().shared_dir().join("data")).unwrap();
    std::fs::write(d.layout().shared_dir().join("data/db"), "rows").unwrap();
    let dest = d.layout().backups_dir();
    std::fs::create_dir_all(&dest).unwrap();
    // A writer pid that cannot run (above pid_max).
    let stale = dest.join(".pre-x.tar.gz.partial-4194305-000000001");
    std::fs::write(&stale, vec![0u8; 1024]).unwrap();
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::Deployed, "{report:?}");
    assert!(!stale.exists(), "the partial of a dead backup is swept");
    let archives = std::fs::read_dir(&dest)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tar.gz"))
        .count();
    assert_eq!(archives, 1);
}

/// Issue 21, item 7: each value that cannot work is exit 78 at load, naming file, line,
/// column and key, before anything is touched.
#[test]
fn values_that_cannot_work_are_refused_at_load_with_file_line_column_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let base = |service: &str, rest: &str| {
        format!(
            "[service]\nname = \"hub\"\nstart = [\"app\"]\n{service}\n[layout]\nroot = \"{}\"\n{rest}\n[proxy]\nkind = \"nginx\"\nlisten_http = [\"127.0.0.1:18080\"]\ncontrol_listen = \"127.0.0.1:9\"\n",
            root.display()
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (base("standby_port = 17001\nport = 0", ""), "service.port"),
        (
            base("port = 17000\nstandby_port = 17000", ""),
            "service.standby_port",
        ),
        (
            base("standby_port = 17001\nport = 17000", "")
                .replace("start = [\"app\"]", "start = [\"\"]"),
            "service.start",
        ),
        (
            base(
                "standby_port = 17001\nport = 17000\nenv = { \"A=B\" = \"x\" }",
                "",
            ),
            "service.env.A=B",
        ),
        (
            base("standby_port = 17001\nport = 17000", "")
                .replace(&format!("root = \"{}\"", root.display()), "root = \"/\""),
            "layout.root",
        ),
        (
            base("standby_port = 17001\nport = 17000", "keep_releases = 1"),
            "layout.keep_releases",
        ),
        (
            base("standby_port = 17001\nport = 17000", "shared = [\"../x/\"]"),
            "layout.shared",
        ),
        (
            base("standby_port = 17001\nport = 17000", "")
                + "server_name = \"a; include /etc/passwd\"\n",
            "proxy.server_name",
        ),
        (
            base("standby_port = 17001\nport = 17000", "") + "[deploy]\nready_timeout = \"0s\"\n",
            "deploy.ready_timeout",
        ),
        (
            base("standby_port = 17001\nport = 99999999999999999999", ""),
            "service.port",
        ),
    ];
    for (text, key) in cases {
        let err = DeployManifest::from_str(tmp.path().join("cutover.toml"), &text)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert_eq!(err.exit_code(), 78, "{key}: {err}");
        let crate::DeployError::Manifest(manifest_loader::ManifestError::Invalid {
            line,
            column,
            key: named,
            ..
        }) = &err
        else {
            panic!("{key}: not located: {err:?}");
        };
        assert!(
            named.starts_with(key) || key.starts_with(named.as_str()),
            "{key}: named {named}: {err}"
        );
        assert!(*line > 0 && *column > 0, "{key}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("cutover.toml:"), "{msg}");
        assert!(!root.exists(), "{key}: nothing is created");
    }
}

#[test]
fn byte_keys_take_a_size_or_an_integer_and_a_bad_size_is_refused_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let text = |memory_max: &str| {
        format!(
            "[service]\nname = \"hub\"\nstart = [\"app\"]\nport = 17000\nstandby_port = 17001\n\
             artifact = {{ path = \"bin/app\", min_bytes = \"100KB\", max_bytes = 2000000 }}\n\
             [layout]\nroot = \"{}\"\n\
             [process]\nlimits = {{ memory_max = {memory_max} }}\n\
             [backup]\nmax_bytes = \"1GiB\"\n\
             [proxy]\nkind = \"nginx\"\nlisten_http = [\"127.0.0.1:18080\"]\ncontrol_listen = \"127.0.0.1:9\"\naccess_log_max_bytes = \"8MiB\"\n",
            root.display()
        )
    };
    let m = DeployManifest::from_str(tmp.path().join("cutover.toml"), &text("\"512MiB\""))
        .expect("sizes are accepted");
    let artifact = m.service.artifact.as_ref().unwrap();
    assert_eq!(
        (artifact.min_bytes, artifact.max_bytes),
        (Some(100_000), Some(2_000_000))
    );
    assert_eq!(
        m.process.limits.as_ref().unwrap().memory_max,
        Some(512 << 20)
    );
    assert_eq!(m.backup.as_ref().unwrap().max_bytes, Some(1 << 30));
    assert_eq!(m.proxy.as_ref().unwrap().access_log_max_bytes, 8 << 20);
    let m = DeployManifest::from_str(tmp.path().join("cutover.toml"), &text("1048576")).unwrap();
    assert_eq!(m.process.limits.as_ref().unwrap().memory_max, Some(1 << 20));
    // Written back as JSON (the supervisor's plan.json), an absent size is `null` and reads
    // back as absent; a present one as its integer.
    let mut limits = m.process.limits.clone().unwrap();
    for memory_max in [Some(1 << 20), None] {
        limits.memory_max = memory_max;
        let json = serde_json::to_string(&limits).unwrap();
        let back: process_control::ResourceLimits = serde_json::from_str(&json).unwrap();
        assert_eq!(back, limits, "{json}");
    }

    let err = DeployManifest::from_str(tmp.path().join("cutover.toml"), &text("\"lots\""))
        .expect_err("a bad size is refused");
    assert_eq!(err.exit_code(), 78, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("cutover.toml:") && msg.contains("lots"),
        "{msg}"
    );
    assert!(!root.exists(), "nothing is created");
}

/// A canary deployment against the fakes: r1 deployed (switched at once, nothing to judge
/// against), then the fake proxy's edge log set up for the canary of r2.
fn canary_setup(canary: &str) -> (tempfile::TempDir, FakeWorld, Deployer) {
    let (tmp, world, d) = setup(
        "canary",
        &format!("keep_standby = false\nstable_for = \"0s\"\n[deploy.canary]\n{canary}"),
    );
    let first = deploy(&d);
    assert_eq!(first.outcome, Outcome::Deployed, "{first:?}");
    let log = tmp.path().join("edge.json");
    std::fs::write(&log, "").unwrap();
    world.edge_log(log);
    (tmp, world, d)
}

fn canary_events(world: &FakeWorld) -> Vec<String> {
    world
        .events()
        .into_iter()
        .filter(|e| e.starts_with("split") || e.starts_with("switch") || e.starts_with("stop"))
        .collect()
}

#[test]
fn a_healthy_canary_is_split_step_by_step_then_switched_and_committed() {
    let (_tmp, world, d) = canary_setup("failure_rate_tolerance = 0.02\nmin_requests = 50");
    let before = world.events().len();
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::Deployed, "{report:?}");
    let events: Vec<String> = world.events()[before..]
        .iter()
        .filter(|e| e.starts_with("split") || e.starts_with("switch"))
        .cloned()
        .collect();
    assert_eq!(
        events,
        [
            format!("split 5% to {GREEN}"),
            format!("split 25% to {GREEN}"),
            format!("split 50% to {GREEN}"),
            format!("switch {GREEN}"),
        ]
    );
    assert_eq!(world.split(), None);
    let audit = crate::audit::read(&d.layout().audit_file()).unwrap();
    let decisions = &audit.last().unwrap().canary;
    let steps: Vec<(u8, &str)> = decisions
        .iter()
        .map(|c| (c.canary_percent, c.verdict.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (5, "promote-step"),
            (25, "promote-step"),
            (50, "promote-step")
        ]
    );
    let state = d.layout().load_state().unwrap();
    let canary = state.canary.unwrap();
    assert_eq!(
        (canary.state.as_str(), canary.canary_percent),
        ("promoted", 100)
    );
    assert_eq!(state.slot, Some(Slot::Green));
}

#[test]
fn a_failing_canary_is_rolled_back_in_one_switch_and_its_slot_stopped() {
    let (_tmp, world, d) = canary_setup("");
    // The canary fails one request in ten, the baseline none.
    world.edge_behaviour(GREEN.parse().unwrap(), 10, 20);
    let before = world.events().len();
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
    let reason = report.reason.unwrap();
    assert!(
        reason.starts_with("switch failed: canary rollback in step 1: the canary's failure rate"),
        "{reason}"
    );
    let tail: Vec<String> = world.events()[before..]
        .iter()
        .filter(|e| e.starts_with("split") || e.starts_with("switch") || e.starts_with("stop"))
        .cloned()
        .collect();
    assert!(
        tail.ends_with(&[
            format!("split 5% to {GREEN}"),
            format!("switch {BLUE}"),
            "stop hub-green".to_owned(),
        ]),
        "{tail:?}"
    );
    assert_eq!(world.split(), None);
    assert_eq!(world.upstream(), Some(BLUE.parse().unwrap()));
    let audit = crate::audit::read(&d.layout().audit_file()).unwrap();
    let last = audit.last().unwrap().canary.last().unwrap().clone();
    assert_eq!(
        (last.verdict.as_str(), last.canary_percent),
        ("rollback", 5)
    );
    assert_eq!(last.evidence["failures"]["worse"], true);
    let canary = d.layout().load_state().unwrap().canary.unwrap();
    assert_eq!(
        (canary.state.as_str(), canary.canary_percent),
        ("rolled-back", 0)
    );
}

/// Without evidence either way, a step ends after `max_step_time` (virtual time here): the
/// default policy rolls back and says why; `inconclusive = "promote"` promotes.
#[test]
fn an_inconclusive_step_follows_the_policy() {
    let (_tmp, world, d) = canary_setup("min_requests = 1000000\nmax_step_time = \"30s\"");
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
    let reason = report.reason.unwrap();
    assert!(
        reason.contains("no decision after 30s in step 1 (max_step_time)")
            && reason.ends_with("the inconclusive policy rolls back"),
        "{reason}"
    );
    assert_eq!(world.upstream(), Some(BLUE.parse().unwrap()));

    let (_tmp, world, d) =
        canary_setup("min_requests = 1000000\nmax_step_time = \"30s\"\ninconclusive = \"promote\"");
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::Deployed, "{report:?}");
    assert_eq!(world.upstream(), Some(GREEN.parse().unwrap()));
    let audit = crate::audit::read(&d.layout().audit_file()).unwrap();
    assert!(audit.last().unwrap().canary.iter().all(|c| {
        c.verdict == "promote-step"
            && c.reason
                .ends_with("the inconclusive policy promotes the step")
    }));
    assert!(canary_events(&world).contains(&format!("switch {GREEN}")));
}

#[test]
fn a_canary_without_an_edge_log_is_rolled_back_and_says_why() {
    let (_tmp, world, d) = setup("canary", "keep_standby = false\nstable_for = \"0s\"");
    assert_eq!(deploy(&d).outcome, Outcome::Deployed);
    let report = deploy(&d);
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("needs the edge log"),
        "{report:?}"
    );
    assert_eq!(world.upstream(), Some(BLUE.parse().unwrap()));
}
