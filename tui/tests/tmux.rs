//! Runs `tests/tui_tmux.sh` (the real binary driven through tmux) over a
//! store built here with the golden model. Skipped, with the reason printed,
//! where tmux is not installed.

mod support;

use std::process::Command;

#[test]
fn tmux_open_select_reconstruct_quit() {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("skipped: tmux is not installed (apt-get install -y tmux)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Build and close the store: the TUI process opens it next.
    drop(support::build_store(dir.path()));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tui_tmux.sh");
    let mut cmd = Command::new("bash");
    // `c3 tui` is checked too when a `c3` that has it sits beside c3-tui
    // (`cargo test --workspace` builds it; `-p c3-tui` alone does not).
    let c3 = std::path::Path::new(env!("CARGO_BIN_EXE_c3-tui")).with_file_name("c3");
    let has_tui = Command::new(&c3)
        .args(["tui", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_tui {
        cmd.env("C3_BIN", &c3).env("C3_TUI_VIA_C3", "1");
    } else {
        println!(
            "`c3 tui` step skipped: no c3 with `tui` at {}",
            c3.display()
        );
        cmd.env_remove("C3_TUI_VIA_C3");
    }
    let out = cmd
        .arg(&script)
        .env("C3_TUI_BIN", env!("CARGO_BIN_EXE_c3-tui"))
        .env("C3_TUI_STORE", dir.path().join("store"))
        .env("C3_TUI_MODEL", support::golden_model())
        .env("C3_TUI_DOC", "alice")
        .env_remove("C3_TUI_KEEP")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tmux script failed:\n{stdout}");
    let passed = if has_tui { 3 } else { 2 };
    assert!(stdout.contains(&format!("tui_tmux: {passed} passed, 0 failed")));
    assert!(stdout.contains("Original · chunk 1"));
}
