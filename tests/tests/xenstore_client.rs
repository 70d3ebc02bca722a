//! The xenstore client against Xen's real oxenstored (see the harness), plus
//! a scripted peer for what a well-behaved daemon never does.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use xsmon_tests::Xenstored;
use xsmon_xenstore::wire::{Header, MsgType, HEADER_LEN, PAYLOAD_MAX};
use xsmon_xenstore::{Access, Client, Error, Perm, Store, XsErrno};

#[test]
fn read_write_directory_mkdir_rm() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    c.write("/test/a/b", b"hello").unwrap();
    assert_eq!(c.read("/test/a/b").unwrap(), b"hello");
    c.mkdir("/test/a/empty").unwrap();
    assert_eq!(c.read("/test/a/empty").unwrap(), b"");
    let mut names = c.directory("/test/a").unwrap();
    names.sort();
    assert_eq!(names, vec!["b", "empty"]);
    c.rm("/test/a").unwrap();
    assert!(c.read("/test/a/b").unwrap_err().is_not_found());
    assert_eq!(c.read_opt("/test/a/b").unwrap(), None);
    // rm of a missing node is not an error: the caller wanted it gone.
    c.rm("/test/a").unwrap();
}

#[test]
fn values_are_bytes_not_strings() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    let value = [0xff, 0xfe, 0x00, b'\n', 0x80, b'x'];
    c.write("/test/bin", &value).unwrap();
    assert_eq!(c.read("/test/bin").unwrap(), value);
}

#[test]
fn missing_node_error_is_typed_and_names_the_path() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    let err = c.read("/no/such/node").unwrap_err();
    assert_eq!(err.errno(), Some(&XsErrno::Enoent));
    let msg = err.to_string();
    assert!(
        msg.contains("/no/such/node") && msg.contains("ENOENT"),
        "{msg}"
    );
}

#[test]
fn largest_value_fits_and_oversized_is_a_clear_error() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    let path = "/test/big";
    // oxenstored's value quota (quota-maxsize, Xen's default 2048) binds
    // dom0 too; the daemon refuses more with a typed E2BIG.
    let fits = vec![b'v'; 2048];
    c.write(path, &fits).unwrap();
    assert_eq!(c.read(path).unwrap(), fits);
    let err = c.write(path, &vec![b'v'; 2049]).unwrap_err();
    assert_eq!(err.errno(), Some(&XsErrno::E2big), "{err}");
    assert!(err.to_string().contains("/test/big"), "{err}");

    // The request payload (path, NUL, value) may be 4096 bytes at most; the
    // client refuses more before sending anything.
    let max_value = PAYLOAD_MAX - path.len() - 1;
    for len in [max_value + 1, 4096, 10_000] {
        let err = c.write(path, &vec![b'v'; len]).unwrap_err();
        assert!(matches!(err, Error::RequestTooLarge { .. }), "{err}");
        assert!(
            err.to_string().contains("exceeds the protocol's limit"),
            "{err}"
        );
    }
    // The connection is still fine after a refused request.
    assert_eq!(c.read(path).unwrap().len(), fits.len());
}

#[test]
fn permissions_set_and_get() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    let path = "/local/domain/7/data/xsmon";
    c.mkdir(path).unwrap();
    // Owned by domain 7 (which may then write it), others none, dom0 read:
    // the layout of a guest's probe area.
    let perms = [Perm::new(7, Access::None), Perm::new(0, Access::Read)];
    c.set_perms(path, &perms).unwrap();
    assert_eq!(c.get_perms(path).unwrap(), perms);
    // Children inherit the parent's permissions when created.
    c.write(&format!("{path}/x"), b"1").unwrap();
    assert_eq!(c.get_perms(&format!("{path}/x")).unwrap(), perms);
    let err = c.set_perms("/no/such", &perms).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn domain_path() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    assert_eq!(c.get_domain_path(7).unwrap(), "/local/domain/7");
    assert_eq!(c.get_domain_path(0).unwrap(), "/local/domain/0");
}

#[test]
fn transaction_conflict_gives_eagain_and_the_helper_retries() {
    let xs = Xenstored::start().unwrap();
    let mut a = xs.client().unwrap();
    let mut b = xs.client().unwrap();
    a.write("/test/counter", b"0").unwrap();

    // By hand: a reads in a transaction, b writes meanwhile, a's commit fails.
    let tx = a.transaction_start().unwrap();
    a.transaction(1, |_| Ok(())).unwrap(); // an unrelated transaction is fine
    let _ = tx;
    let err = {
        let id = a.transaction_start().unwrap();
        // Read and write inside the transaction through the raw id.
        let mut conflicted = None;
        let r = a.transaction(1, |t| {
            let v = t.read("/test/counter")?;
            b.write("/test/counter", b"changed-by-b").unwrap();
            t.write("/test/counter", &[v, b"+1".to_vec()].concat())
        });
        if let Err(e) = r {
            conflicted = Some(e);
        }
        a.transaction_end(id, false).unwrap();
        conflicted.expect("commit after a concurrent write must fail")
    };
    assert!(
        matches!(err, Error::TooManyConflicts { attempts: 1 }),
        "{err}"
    );

    // The helper: first attempt conflicts, second commits.
    let mut attempts = 0;
    a.transaction(5, |t| {
        attempts += 1;
        let v = t.read("/test/counter")?;
        if attempts == 1 {
            b.write("/test/counter", b"10").unwrap();
        }
        let n: u32 = String::from_utf8_lossy(&v).parse().unwrap_or(0);
        t.write("/test/counter", (n + 1).to_string().as_bytes())
    })
    .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(a.read("/test/counter").unwrap(), b"11");
}

#[test]
fn transaction_body_error_aborts_without_writing() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    let r: Result<(), Error> = c.transaction(3, |t| {
        t.write("/test/half", b"written")?;
        t.read("/test/does-not-exist").map(drop)
    });
    assert!(r.unwrap_err().is_not_found());
    assert_eq!(c.read_opt("/test/half").unwrap(), None);
}

#[test]
fn an_over_long_directory_is_refused_and_the_connection_survives() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    // 10,000 children (dom0 may write them; a guest's quota stops at
    // 1000) make a listing far over the protocol's 4096 bytes. Xen 4.17's
    // oxenstored has no XS_DIRECTORY_PART and sends the over-long reply
    // anyway: the client must refuse it without buffering it, and the
    // connection must stay in step for the next request.
    for i in 0..10_000 {
        c.write(&format!("/test/many/key{i:05}"), b"x").unwrap();
    }
    let err = c.directory("/test/many").unwrap_err();
    assert!(
        err.to_string().contains("exceeds the protocol's limit"),
        "{err}"
    );
    assert_eq!(c.read("/test/many/key00042").unwrap(), b"x");
    // A listing that fits is read as usual.
    for i in 0..300 {
        c.write(&format!("/test/some/k{i}"), b"x").unwrap();
    }
    assert_eq!(c.directory("/test/some").unwrap().len(), 300);
}

#[test]
fn daemon_killed_mid_session_is_a_clear_error_not_a_hang() {
    let mut xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    c.set_timeout(Duration::from_secs(2));
    c.write("/test/x", b"1").unwrap();
    xs.kill();
    let start = Instant::now();
    let err = c.read("/test/x").unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(err, Error::Closed { .. } | Error::Io { .. }),
        "unexpected error: {err}"
    );
    // And the connection stays failed rather than pretending.
    assert!(c.read("/test/x").is_err());
}

#[test]
fn xenstore_tools_see_what_the_client_wrote() {
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    c.write("/test/tool/key", b"from-client").unwrap();
    let out = xs
        .tool("xenstore-read")
        .arg("/test/tool/key")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-client");
    let st = xs
        .tool("xenstore-write")
        .args(["/test/tool/other", "from-tool"])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(c.read("/test/tool/other").unwrap(), b"from-tool");
}

// ---- a scripted peer, for what a real daemon does not do ----

/// Starts a one-connection peer that runs `script` on the accepted stream.
fn scripted_peer(
    script: impl FnOnce(std::os::unix::net::UnixStream) + Send + 'static,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            script(stream);
        }
    });
    (dir, path)
}

fn read_request(s: &mut std::os::unix::net::UnixStream) -> Header {
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).unwrap();
    let h = Header::decode(&head).unwrap();
    let mut body = vec![0u8; h.len as usize];
    s.read_exact(&mut body).unwrap();
    h
}

fn frame(msg_type: u32, req_id: u32, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Header {
        msg_type,
        req_id,
        tx_id: 0,
        len,
    }
    .encode()
    .to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn a_peer_that_never_answers_times_out() {
    let (_dir, path) = scripted_peer(|mut s| {
        read_request(&mut s);
        std::thread::sleep(Duration::from_secs(5));
    });
    let mut c = Client::open(&path).unwrap();
    c.set_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let err = c.read("/x").unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("no reply within"), "{err}");
}

#[test]
fn watch_events_and_stale_replies_are_skipped() {
    let (_dir, path) = scripted_peer(|mut s| {
        let h = read_request(&mut s);
        let mut out = frame(MsgType::WatchEvent as u32, 0, 11, b"/x\0token\0\0\0");
        out.truncate(HEADER_LEN + 11);
        out.extend(frame(
            MsgType::Read as u32,
            h.req_id.wrapping_add(100),
            5,
            b"stale",
        ));
        out.extend(frame(MsgType::Read as u32, h.req_id, 5, b"fresh"));
        s.write_all(&out).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let mut c = Client::open(&path).unwrap();
    assert_eq!(c.read("/x").unwrap(), b"fresh");
}

#[test]
fn an_over_long_frame_from_the_peer_is_an_error() {
    let (_dir, path) = scripted_peer(|mut s| {
        let h = read_request(&mut s);
        // Claims 1 GiB of payload and never sends it: the client must
        // refuse at once, not allocate, and not wait for it.
        s.write_all(&frame(MsgType::Read as u32, h.req_id, 1 << 30, b""))
            .unwrap();
        std::thread::sleep(Duration::from_secs(2));
    });
    let mut c = Client::open(&path).unwrap();
    c.set_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let err = c.read("/x").unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "waited {:?}",
        start.elapsed()
    );
    assert!(matches!(err, Error::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("exceeds"), "{err}");
    // The next request waits behind the announced payload and times out.
    assert!(matches!(c.read("/x").unwrap_err(), Error::Timeout { .. }));
}

#[test]
fn an_over_long_reply_that_is_sent_whole_is_skipped() {
    let (_dir, path) = scripted_peer(|mut s| {
        let h = read_request(&mut s);
        let big = vec![b'z'; 50_000];
        s.write_all(&frame(
            MsgType::Read as u32,
            h.req_id,
            big.len() as u32,
            &big,
        ))
        .unwrap();
        let h = read_request(&mut s);
        s.write_all(&frame(MsgType::Read as u32, h.req_id, 2, b"ok"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let mut c = Client::open(&path).unwrap();
    assert!(matches!(c.read("/x").unwrap_err(), Error::Protocol { .. }));
    assert_eq!(c.read("/y").unwrap(), b"ok");
}

#[test]
fn a_truncated_reply_then_close_is_an_error() {
    let (_dir, path) = scripted_peer(|mut s| {
        let h = read_request(&mut s);
        let f = frame(MsgType::Read as u32, h.req_id, 100, b"only part");
        s.write_all(&f).unwrap();
        // Drop closes the stream with the frame incomplete.
    });
    let mut c = Client::open(&path).unwrap();
    let err = c.read("/x").unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err}");
}

#[test]
fn a_reply_of_the_wrong_type_is_an_error() {
    let (_dir, path) = scripted_peer(|mut s| {
        let h = read_request(&mut s);
        s.write_all(&frame(MsgType::Directory as u32, h.req_id, 2, b"a\0"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let mut c = Client::open(&path).unwrap();
    let err = c.read("/x").unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err}");
}

#[test]
fn explicit_path_and_missing_paths_are_clear() {
    let err = Client::open("/nonexistent/xenstored/socket").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/xenstored/socket"),
        "{err}"
    );
}

#[test]
fn pipelined_requests_come_back_in_request_order() {
    use xsmon_xenstore::{Reply, Request};
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    for i in 0..300 {
        c.write(&format!("/p/k{i}"), format!("v{i}").as_bytes())
            .unwrap();
    }
    let mut reqs: Vec<Request> = (0..300)
        .map(|i| Request::Read(format!("/p/k{i}")))
        .collect();
    reqs.push(Request::Read("/p/missing".into()));
    reqs.push(Request::Directory("/p".into()));
    reqs.push(Request::Read(String::new()));
    let replies = c.pipeline(&reqs);
    assert_eq!(replies.len(), 303);
    for (i, r) in replies[..300].iter().enumerate() {
        assert_eq!(
            r.as_ref().unwrap(),
            &Reply::Value(format!("v{i}").into_bytes())
        );
    }
    assert!(replies[300].as_ref().unwrap_err().is_not_found());
    match replies[301].as_ref().unwrap() {
        Reply::Names(n) => assert_eq!(n.len(), 300),
        other => panic!("{other:?}"),
    }
    assert!(matches!(replies[302], Err(Error::InvalidPath { .. })));
    // The connection is in step afterwards.
    assert_eq!(c.read("/p/k7").unwrap(), b"v7");
}

/// `pipeline_each` hands over each result once, the moment it is known:
/// the daemon's replies in request order, a path that cannot be sent at
/// once; after the daemon is gone, every request still gets its error.
#[test]
fn each_pipelined_result_is_handed_over_once_as_it_comes() {
    use xsmon_xenstore::{Reply, Request};
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    for i in 0..600 {
        c.write(&format!("/e/k{i}"), format!("v{i}").as_bytes())
            .unwrap();
    }
    let mut reqs: Vec<Request> = (0..600)
        .map(|i| Request::Read(format!("/e/k{i}")))
        .collect();
    reqs.insert(400, Request::Read(String::new()));
    let mut seen = Vec::new();
    c.pipeline_each(&reqs, |i, r| seen.push((i, r)));
    let order: Vec<usize> = seen.iter().map(|(i, _)| *i).filter(|i| *i != 400).collect();
    assert_eq!(order, (0..601).filter(|i| *i != 400).collect::<Vec<_>>());
    assert_eq!(seen.len(), 601);
    for (i, r) in &seen {
        match *i {
            400 => assert!(matches!(r, Err(Error::InvalidPath { .. })), "{r:?}"),
            i => {
                let k = if i < 400 { i } else { i - 1 };
                assert_eq!(
                    r.as_ref().unwrap(),
                    &Reply::Value(format!("v{k}").into_bytes())
                );
            }
        }
    }
    // The daemon gone: every request fails, each once.
    drop(xs);
    let mut failed = Vec::new();
    c.pipeline_each(&reqs[..10], |i, r| failed.push((i, r.is_err())));
    failed.sort_unstable();
    assert_eq!(failed, (0..10).map(|i| (i, true)).collect::<Vec<_>>());
}

#[test]
fn watches_fire_once_when_set_then_on_every_change_and_between_requests() {
    let xs = Xenstored::start().unwrap();
    let mut watcher = xs.client().unwrap();
    let mut writer = xs.client().unwrap();
    watcher.watch("/test/w", "tok").unwrap();
    // The daemon fires a new watch once.
    let first = watcher.wait_event(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(
        (first.path.as_str(), first.token.as_str()),
        ("/test/w", "tok")
    );
    assert_eq!(
        watcher.wait_event(Duration::from_millis(200)).unwrap(),
        None
    );
    writer.write("/test/w/x", b"1").unwrap();
    let e = watcher.wait_event(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(e.path, "/test/w/x");
    // An event that arrives while the client waits for a reply is kept.
    writer.write("/test/w/y", b"2").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(watcher.read("/test/w/y").unwrap(), b"2");
    let e = watcher.wait_event(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(e.path, "/test/w/y");
    // dom0's special paths.
    watcher.watch("@releaseDomain", "rel").unwrap();
    let e = watcher.wait_event(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(
        (e.path.as_str(), e.token.as_str()),
        ("@releaseDomain", "rel")
    );
}
