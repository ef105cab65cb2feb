//! A long campaign against a broken engine must not fill the disk: only the first
//! `set_kept_findings_max` findings keep their data directory; later ones are still
//! reported, with their reproduce line. (Its own test binary: the bound is per process.)

use crashkit::case::{cycle_seed, Case, KillKind, ModeName};
use crashkit::cycle::{run_cycle, set_kept_findings_max, ChildCommand, CycleEnv};
use crashkit::wrong_engine::WrongEngine;

#[test]
fn only_the_first_n_findings_keep_their_directory() {
    let dir = tempfile::tempdir_in(crashkit::cycle::default_work_root()).unwrap();
    let env = CycleEnv {
        wrong: Some(WrongEngine::ShiftsVersions),
        ..CycleEnv::under(
            dir.path(),
            ChildCommand::program(env!("CARGO_BIN_EXE_crashkit-child")),
        )
    };
    set_kept_findings_max(2);
    let mut findings = Vec::new();
    for i in 0..40 {
        let case = Case::new(cycle_seed(0x4ee9, i), ModeName::Strict, KillKind::Offset);
        if let Some(f) = run_cycle(&case, &env).unwrap().finding {
            findings.push(f);
        }
        if findings.len() == 5 {
            break;
        }
    }
    assert_eq!(
        findings.len(),
        5,
        "the wrong engine is found on most cycles"
    );
    let kept: Vec<_> = findings
        .iter()
        .filter_map(|f| f.artifacts_dir.clone())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|d| d.join("wal.log.crashed").is_file()));
    assert_eq!(std::fs::read_dir(&env.artifacts_dir).unwrap().count(), 2);
    for f in &findings[2..] {
        assert!(f.inspect.is_none());
        assert!(f.repro.contains("--seed"));
        assert!(f.to_string().contains("not kept"), "{f}");
    }
}
