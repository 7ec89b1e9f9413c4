//! Who may do what on the collector: every credential tried against
//! every route over real TLS (client certificates from a CA made here,
//! bearer tokens made by `wormlog-collector token`), each allowed call
//! answered, each refused one refused and written to the access log, and
//! no token kept anywhere in clear.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// An HTTPS client trusting the test CA, with a client certificate from
/// `pki/<cert>.pem` when given.
fn https(s: &Setup, cert: Option<&str>) -> reqwest::blocking::Client {
    let ca = s.d.p("pki/ca.pem");
    let certs = cert.map(|c| {
        (
            s.d.p(&format!("pki/{c}.pem")),
            s.d.p(&format!("pki/{c}-key.pem")),
        )
    });
    let tls = wormlog_tls::client_config(
        Some(&ca),
        certs.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .unwrap();
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Cred {
    None,
    BadToken,
    AgentCert,
    Token(&'static str),
    UserCert,
}

#[test]
fn every_role_against_every_route() {
    let mut s = mtls_setup();
    // Users: an auditor, an auditor of web-02 only, an admin, an agent
    // user for web-01 (tokens), and an auditor with a certificate.
    let names = ["audra", "lim", "adam", "agentu"];
    let mut tokens = BTreeMap::new();
    let mut users = String::new();
    for (name, roles, agents) in [
        ("audra", "[\"auditor\"]", ""),
        ("lim", "[\"auditor\"]", "agents = [\"web-02\"]\n"),
        ("adam", "[\"admin\"]", ""),
        ("agentu", "[\"agent\"]", "agents = [\"web-01\"]\n"),
    ] {
        let (t, line) = new_token();
        tokens.insert(name, t);
        users.push_str(&format!(
            "[[users]]\nname = \"{name}\"\nroles = {roles}\n{agents}{line}\n\n"
        ));
    }
    users.push_str(
        "[[users]]\nname = \"alice\"\nroles = [\"auditor\"]\ncert_name = \"alice.auditors\"\n",
    );
    let cfg = s.d.p("collector.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push('\n');
    text.push_str(&users);
    std::fs::write(&cfg, &text).unwrap();
    let collector = start_collector(&mut s);
    let agent_cfg = mtls_agent_config(&s, "agent", Some("web-01"), "ca", "localhost", s.port);
    write_lines(&s.d.p("logs/app.log"), 0, 40);
    let agent = s.start_agent(&agent_cfg, "agent");
    wait_for(
        "40 lines stored",
        Duration::from_secs(30),
        || next_seq_in_store(&s.d.p("store")) > 40 && stored_lines(&s.d.p("store")).len() == 40,
        || agent.log(),
    );
    // Let a receipt cover the last line (bundles need a countersigned
    // checkpoint after what they prove).
    let base = format!("https://localhost:{}", s.port);
    let audra = https(&s, None);
    let search = |c: &reqwest::blocking::Client, q: &str| -> Value {
        c.get(format!("{base}/v1/agents/web-01/records?{q}"))
            .bearer_auth(&tokens["audra"])
            .send()
            .unwrap()
            .text()
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap()
    };
    let hit = search(&audra, "text=LINE%200000017&order=oldest");
    let recs = hit["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{hit}");
    assert_eq!(recs[0]["body"], line(17));
    assert_eq!(recs[0]["agent"], "web-01");
    let seq17 = recs[0]["seq"].as_u64().unwrap();
    wait_for(
        "a countersigned checkpoint after line 17",
        Duration::from_secs(30),
        || {
            audra
                .get(format!(
                    "{base}/v1/agents/web-01/records/{seq17}/disclosure"
                ))
                .bearer_auth(&tokens["audra"])
                .send()
                .unwrap()
                .status()
                == 200
        },
        || collector.log(),
    );
    // The newest countersigned checkpoint is published (off the answer's
    // path) before the table asks for it.
    wait_for(
        "the checkpoint note",
        Duration::from_secs(10),
        || s.d.p("store/checkpoints/web-01").exists(),
        || collector.log(),
    );
    let (_, newkey) = {
        let out = Command::new(agent_bin())
            .args(["keygen", "--key-dir"])
            .arg(s.d.p("keys-3"))
            .output()
            .unwrap();
        ((), String::from_utf8(out.stdout).unwrap().trim().to_owned())
    };

    // The routes: name, method, path, body.
    let routes: Vec<(&str, &str, String, String)> = vec![
        ("whoami", "GET", "/v1/whoami".into(), String::new()),
        ("agents", "GET", "/v1/agents".into(), String::new()),
        (
            "search",
            "GET",
            "/v1/agents/web-01/records?text=line".into(),
            String::new(),
        ),
        (
            "verify",
            "GET",
            "/v1/agents/web-01/verify".into(),
            String::new(),
        ),
        (
            "export",
            "GET",
            format!("/v1/agents/web-01/export?from_seq=3&to_seq={seq17}"),
            String::new(),
        ),
        (
            "disclose",
            "GET",
            format!("/v1/agents/web-01/records/{seq17}/disclosure"),
            String::new(),
        ),
        (
            "checkpoint",
            "GET",
            "/v1/agents/web-01/checkpoint".into(),
            String::new(),
        ),
        ("access_log", "GET", "/v1/access".into(), String::new()),
        ("users", "GET", "/v1/admin/users".into(), String::new()),
        (
            "register_agent",
            "PUT",
            "/v1/admin/agents/web-03".into(),
            newkey.clone(),
        ),
        (
            "state",
            "GET",
            "/v1/agents/web-01/state".into(),
            String::new(),
        ),
        // The console's reads.
        ("overview", "GET", "/v1/overview".into(), String::new()),
        (
            "timeline",
            "GET",
            "/v1/agents/web-01/timeline".into(),
            String::new(),
        ),
        (
            "record",
            "GET",
            format!("/v1/agents/web-01/records/{seq17}"),
            String::new(),
        ),
        (
            "verify_start",
            "POST",
            "/v1/agents/web-01/verifications".into(),
            "{}".into(),
        ),
        (
            "verify_progress",
            "GET",
            "/v1/agents/web-01/verifications/latest".into(),
            String::new(),
        ),
    ];
    // Expected status per credential, in the order of `routes`.
    #[rustfmt::skip]
    let table: Vec<(&str, Cred, [u16; 16])> = vec![
        ("none", Cred::None,
            [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 403, 401, 401, 401, 401, 401]),
        ("bad token", Cred::BadToken,
            [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 403, 401, 401, 401, 401, 401]),
        ("agent certificate", Cred::AgentCert,
            [403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403, 403, 403, 403, 403]),
        ("auditor", Cred::Token("audra"),
            [200, 200, 200, 200, 200, 200, 200, 200, 403, 403, 403, 200, 200, 200, 202, 200]),
        ("auditor of web-02", Cred::Token("lim"),
            [200, 200, 403, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403, 403, 403, 403]),
        ("admin", Cred::Token("adam"),
            [200, 200, 403, 403, 403, 403, 403, 403, 200, 201, 403, 200, 200, 403, 403, 403]),
        ("agent user", Cred::Token("agentu"),
            [200, 403, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403, 403, 403, 403, 403]),
        ("auditor certificate", Cred::UserCert,
            [200, 200, 200, 200, 200, 200, 200, 200, 403, 403, 403, 200, 200, 200, 202, 200]),
    ];
    let plain = https(&s, None);
    let agent_client = https(&s, Some("web-01"));
    let alice = https(&s, Some("alice"));
    let mut refused = Vec::new();
    for (who, cred, want) in &table {
        for ((name, method, path, body), want) in routes.iter().zip(want) {
            let client = match cred {
                Cred::AgentCert => &agent_client,
                Cred::UserCert => &alice,
                _ => &plain,
            };
            let url = format!("{base}{path}");
            let mut req = match *method {
                "GET" => client.get(&url),
                "POST" => client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone()),
                _ => client.put(&url).body(body.clone()),
            };
            req = match cred {
                Cred::Token(n) => req.bearer_auth(&tokens[n]),
                Cred::BadToken => req.bearer_auth("wlt_not-a-token"),
                _ => req,
            };
            let resp = req.send().unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().unwrap();
            assert_eq!(status, *want, "{who} → {name}: {text}");
            if status == 401 {
                assert!(text.contains("unauthenticated"), "{text}");
            }
            if (status == 401 || status == 403) && *name != "state" {
                refused.push((*who, *cred, *name, status));
            }
            if status == 200
                && (*name == "agents" || *name == "overview")
                && matches!(cred, Cred::Token("lim"))
            {
                assert!(
                    !text.contains("web-01"),
                    "a limited auditor sees only its agents: {text}"
                );
            }
        }
    }
    // A second registration with the same key is idempotent; another key
    // is refused: nothing is ever replaced.
    let again = plain
        .put(format!("{base}/v1/admin/agents/web-03"))
        .bearer_auth(&tokens["adam"])
        .body(newkey.clone())
        .send()
        .unwrap();
    assert_eq!(again.status().as_u16(), 200);
    let other = plain
        .put(format!("{base}/v1/admin/agents/web-03"))
        .bearer_auth(&tokens["adam"])
        .body(s.pubkey.clone())
        .send()
        .unwrap();
    assert_eq!(other.status().as_u16(), 409);
    // No route deletes or alters: DELETE and POST on read routes are 405.
    for (m, p) in [
        ("DELETE", "/v1/agents/web-01/records"),
        ("DELETE", "/v1/agents/web-01"),
        ("POST", "/v1/agents/web-01/verify"),
    ] {
        let r = plain
            .request(m.parse().unwrap(), format!("{base}{p}"))
            .bearer_auth(&tokens["adam"])
            .send()
            .unwrap();
        assert!(
            matches!(r.status().as_u16(), 404 | 405),
            "{m} {p}: {}",
            r.status()
        );
    }

    // A verification is started only with a JSON body type (a form that
    // another site's page posts cannot start one with the browser's
    // client certificate).
    let r = plain
        .post(format!("{base}/v1/agents/web-01/verifications"))
        .bearer_auth(&tokens["audra"])
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);

    // An agent without a certificate forwards with its agent user's token
    // (the token is sent, never logged).
    let tf = s.d.p("agentu.token");
    std::fs::write(&tf, &tokens["agentu"]).unwrap();
    drop(agent);
    let tok_cfg = mtls_agent_config(&s, "agent-token", None, "ca", "localhost", s.port);
    let mut t = std::fs::read_to_string(&tok_cfg).unwrap();
    t.push_str(&format!("token_file = \"{}\"\n", tf.display()));
    std::fs::write(&tok_cfg, t).unwrap();
    write_lines(&s.d.p("logs/app.log"), 40, 10);
    let agent = s.start_agent(&tok_cfg, "agent-token");
    wait_for(
        "50 lines stored, the last 10 with a token",
        Duration::from_secs(30),
        || stored_lines(&s.d.p("store")).len() == 50,
        || agent.log(),
    );
    assert!(!agent.log().contains(&tokens["agentu"]));

    // /metrics on the main listener: a certificate or a token, as any
    // route, now that a client may come without a certificate.
    let m = |c: &reqwest::blocking::Client, t: Option<&str>| {
        let mut r = c.get(format!("{base}/metrics"));
        if let Some(t) = t {
            r = r.bearer_auth(t);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(m(&plain, None), 401);
    assert_eq!(m(&plain, Some("wlt_nope")), 401);
    assert_eq!(m(&agent_client, None), 200);
    assert_eq!(m(&plain, Some(&tokens["adam"])), 200);

    // Every refusal is in the access log, with who (when known) and what.
    let access = || -> Vec<Value> {
        json_lines(
            Command::new(collector_bin())
                .args(["access", "--json", "--store"])
                .arg(s.d.p("store")),
        )
    };
    wait_for(
        "every refusal in the access log",
        Duration::from_secs(20),
        || {
            let log = access();
            refused.iter().all(|(_, cred, action, status)| {
                let user = match cred {
                    Cred::Token(n) => Some(*n),
                    Cred::UserCert => Some("alice"),
                    _ => None,
                };
                log.iter().any(|v| {
                    v["action"] == *action
                        && v["status"] == *status
                        && match user {
                            Some(u) => v["user"] == u,
                            None => v["user"].is_null(),
                        }
                })
            })
        },
        || format!("{refused:?}\n{:#?}", access()),
    );
    // And the allowed reads, with what they returned.
    let log = access();
    let searched = log
        .iter()
        .find(|v| {
            v["action"] == "search" && v["user"] == "audra" && v["params"]["text"] == "LINE 0000017"
        })
        .expect("the auditor's search is on record");
    assert_eq!(searched["status"], 200);
    assert_eq!(searched["returned"], 1);
    assert_eq!(searched["via"], "token");
    assert!(log.iter().any(|v| v["action"] == "disclose"
        && v["user"] == "alice"
        && v["via"] == "certificate"
        && v["status"] == 200));
    let filtered = Command::new(collector_bin())
        .args(["access", "--user", "lim", "--store"])
        .arg(s.d.p("store"))
        .output()
        .unwrap();
    let text = String::from_utf8(filtered.stdout).unwrap();
    assert!(
        text.lines().count() >= 9 && text.lines().all(|l| l.contains("user=lim")),
        "{text}"
    );

    // No token is kept in clear: not in the store, the keys, the
    // configuration or the collector's log.
    drop(agent);
    let log_text = collector.stop();
    let mut files = vec![cfg.clone()];
    let mut stack = vec![s.d.p("store")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    for name in names {
        let t = tokens[name].as_bytes();
        for f in &files {
            let b = std::fs::read(f).unwrap();
            assert!(
                !b.windows(t.len()).any(|w| w == t),
                "{name}'s token in clear in {}",
                f.display()
            );
        }
        assert!(!log_text.contains(&tokens[name]));
    }
}
