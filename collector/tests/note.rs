//! Published checkpoints in the C2SP signed-note form, checked by an
//! independent implementation: Go's golang.org/x/mod/sumdb/note from
//! Debian's packages (golang-go, golang-golang-x-mod-dev). Without them the
//! test fails under CI=true, and is skipped, saying so, elsewhere.

mod common;

use base64::Engine;
use common::*;
use std::process::Command;
use std::time::Duration;

const CHECK_GO: &str = r#"package main

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	vkey, _ := os.ReadFile(os.Args[1])
	msg, _ := os.ReadFile(os.Args[2])
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		fmt.Println("verifier:", err)
		os.Exit(2)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	fmt.Print(n.Text)
}
"#;

/// `go run` of the checker on (verifier key, note): exit code and output.
fn go_open(dir: &std::path::Path, vkey: &std::path::Path, note: &std::path::Path) -> (i32, String) {
    std::fs::write(dir.join("check.go"), CHECK_GO).unwrap();
    let o = Command::new("go")
        .arg("run")
        .arg(dir.join("check.go"))
        .arg(vkey)
        .arg(note)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn the_published_checkpoint_is_a_signed_note_gos_sumdb_note_accepts() {
    let have_go = Command::new("go").arg("version").output().is_ok()
        && std::path::Path::new("/usr/share/gocode/src/golang.org/x/mod/sumdb/note").exists();
    if !have_go {
        assert!(
            std::env::var_os("CI").is_none(),
            "Go and golang.org/x/mod are needed (apt-get install golang-go golang-golang-x-mod-dev)"
        );
        eprintln!("skipped: no go or golang-golang-x-mod-dev here");
        return;
    }
    let mut s = Setup::new();
    s.write_collector_config("origin = \"collector.example.org/wormlog\"");
    let collector = start_collector(&mut s);
    let agent_cfg =
        s.write_agent_config("agent", &format!("url = \"http://127.0.0.1:{}\"", s.port));
    write_lines(&s.d.p("logs/app.log"), 0, 100);
    let agent = s.start_agent(&agent_cfg, "agent");
    let store = s.d.p("store");
    wait_for(
        "100 lines stored",
        Duration::from_secs(30),
        || next_seq_in_store(&store) > 100 && stored_lines(&store).len() == 100,
        || collector.log(),
    );
    // A clean stop ends with a checkpoint of everything, countersigned.
    agent.stop();
    verify_store(&store);
    // The newest checkpoint in the store: what the collector countersigned
    // last.
    let cat = Command::new(collector_bin())
        .args(["cat", "--json", "--agent", "web-01", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let chain = String::from_utf8_lossy(&cat.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|v| v["kind"] == "checkpoint")
        .unwrap();
    let note_path = store.join("checkpoints/web-01");
    let want_size = chain["tree_size"].as_u64().unwrap();
    wait_for(
        "the final checkpoint published",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&note_path)
                .ok()
                .and_then(|t| t.lines().nth(1)?.parse::<u64>().ok())
                == Some(want_size)
        },
        || {
            format!(
                "{}\nnote: {:?}\nchain: {chain}",
                collector.log(),
                std::fs::read_to_string(&note_path)
            )
        },
    );
    let note = std::fs::read_to_string(&note_path).unwrap();
    let root = base64::engine::general_purpose::STANDARD
        .encode(hex_decode(chain["root"].as_str().unwrap()));
    let text = format!("collector.example.org/wormlog/web-01\n{want_size}\n{root}\n");
    assert!(
        note.starts_with(&format!(
            "{text}\n\u{2014} collector.example.org/wormlog/collector/test-collector "
        )),
        "{note}"
    );

    let vkey = s.d.p("store/keys/checkpoint.vkey");
    let (code, out) = go_open(&s.d.p(""), &vkey, &note_path);
    assert_eq!((code, out.as_str()), (0, text.as_str()));
    // A changed size or root fails there too.
    let bad = s.d.p("bad-note");
    std::fs::write(
        &bad,
        note.replacen(
            &format!("\n{want_size}\n"),
            &format!("\n{}\n", want_size + 1),
            1,
        ),
    )
    .unwrap();
    let (code, out) = go_open(&s.d.p(""), &vkey, &bad);
    assert_eq!(code, 1, "{out}");
    collector.stop();
}

fn hex_decode(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}
