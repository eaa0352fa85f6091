//! Handing the loaded objects over, for real: descriptors that outlive the
//! loader, the completeness checks a reader makes, pins in a private bpffs,
//! and programs that go away with the last holder. Needs root (CI runs as
//! root; elsewhere these skip, loudly).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use leco_bpf::handoff::{pin_state, unpin};
use leco_bpf::{Capture, HandoffError, Handover, Options, PinState, Received, Record, RecordKind};
use leco_testkit::{require_root, Bpffs, LoopbackConnection};

fn options() -> Options {
    Options {
        update_interval: Duration::from_millis(1500),
        max_flows: 4096,
        ..Options::default()
    }
}

fn load() -> (Capture, Handover) {
    let capture = Capture::load(&options()).expect("load eBPF programs");
    let handover = capture.handover().expect("handover");
    (capture, handover)
}

fn copies(h: &Handover) -> Vec<(String, OwnedFd)> {
    h.objects()
        .map(|(n, fd): (&str, BorrowedFd<'_>)| {
            (n.to_owned(), fd.try_clone_to_owned().expect("dup"))
        })
        .collect()
}

fn program_loaded(id: u32) -> bool {
    libbpf_rs::Program::fd_from_id(id).is_ok()
}

/// Waits up to 5 s for every program of `ids` to be unloaded.
fn assert_unloaded(ids: &[(String, u32)]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while ids.iter().any(|(_, id)| program_loaded(*id)) {
        assert!(
            Instant::now() < deadline,
            "programs still loaded: {:?}",
            ids.iter()
                .filter(|(_, id)| program_loaded(*id))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn received_descriptors_outlive_the_loader_and_are_checked() {
    if !require_root("received_descriptors_outlive_the_loader_and_are_checked") {
        return;
    }
    let (capture, handover) = load();
    let manifest = handover.manifest().clone();
    let programs = manifest.program_ids();
    assert!(programs.len() >= 4, "links: {programs:?}");
    assert_eq!(
        manifest.settings.update_interval,
        Duration::from_millis(1500)
    );
    assert_eq!(manifest.settings.max_flows, 4096);
    let names: Vec<String> = handover.objects().map(|(n, _)| n.to_owned()).collect();
    assert_eq!(names.last().map(String::as_str), Some("leco-manifest"));
    assert!(names.contains(&"leco-map-flows".to_string()), "{names:?}");
    assert!(
        names.contains(&"leco-link-on_inet_sock_set_state".to_string()),
        "{names:?}"
    );
    assert_eq!(manifest.check_alive(), Ok(()));
    assert_eq!(
        leco_bpf::Manifest::from_map_id(handover.manifest_id()).expect("manifest by id"),
        manifest
    );

    // The loader goes; its handover keeps everything attached.
    drop(capture);
    for (name, id) in &programs {
        assert!(
            program_loaded(*id),
            "{name} (id {id}) unloaded with the loader"
        );
    }

    // Whatever is missing or foreign is named, never taken as complete.
    let without = |name: &str| -> Vec<(String, OwnedFd)> {
        copies(&handover)
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect()
    };
    match Received::from_fds(without("leco-manifest")) {
        Err(HandoffError::NoManifest { present }) => assert_eq!(present, names.len() - 1),
        other => panic!("no manifest taken for {other:?}"),
    }
    let err =
        Received::from_fds(without("leco-link-on_sock_send_length")).expect_err("a link missing");
    assert!(
        err.to_string().contains("leco-link-on_sock_send_length"),
        "{err}"
    );
    let mut swapped = copies(&handover);
    let events = swapped
        .iter()
        .position(|(n, _)| n == "leco-map-events")
        .expect("events");
    let flows = swapped
        .iter()
        .position(|(n, _)| n == "leco-map-flows")
        .expect("flows");
    swapped[events].0 = "leco-map-flows".into();
    swapped[flows].0 = "leco-map-events".into();
    let err = Received::from_fds(swapped).expect_err("swapped maps");
    assert!(err.to_string().contains("another object"), "{err}");
    let mut doubled = copies(&handover);
    doubled.extend(
        copies(&handover)
            .into_iter()
            .filter(|(n, _)| n == "leco-manifest"),
    );
    assert!(matches!(
        Received::from_fds(doubled),
        Err(HandoffError::ManyManifests { count: 2 })
    ));

    // The complete set reads: a connection shows in the ring buffer and the
    // flow table, as if this process had loaded the programs.
    let mut extra = copies(&handover);
    extra.push(("unrelated".into(), not_bpf()));
    let received = Received::from_fds(extra).expect("complete handover");
    assert_eq!(received.ignored(), ["unrelated".to_string()]);
    assert_eq!(received.settings(), manifest.settings);
    let mut reader = received.maps().reader().expect("reader");
    let conn = LoopbackConnection::open("leco-t-handoff");
    let pid = conn.pid();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let new = loop {
        let mut batch = Vec::new();
        reader
            .poll(Duration::from_millis(100), &mut batch)
            .expect("poll");
        seen.extend(batch.into_iter().filter_map(Result::ok));
        if let Some(f) = seen.iter().find_map(|e| match e {
            Record::Flow {
                kind: RecordKind::New,
                flow,
                ..
            } if flow.owner.pid == pid => Some(flow.clone()),
            _ => None,
        }) {
            break f;
        }
        assert!(Instant::now() < deadline, "no new event for pid {pid}");
    };
    assert_eq!(new.owner.comm.as_bytes(), b"leco-t-handoff");
    assert_eq!(new.remote_port, conn.port());
    assert!(
        received.maps().flows().iter().any(|f| f.id == new.id),
        "the open connection is in the flow table"
    );
    assert_eq!(conn.close(), 0);

    // Last holder gone: programs gone.
    drop(reader);
    drop(received);
    drop(handover);
    assert_unloaded(&programs);
}

#[test]
fn pins_are_complete_only_with_every_object_and_their_manifest() {
    if !require_root("pins_are_complete_only_with_every_object_and_their_manifest") {
        return;
    }
    let fs =
        Bpffs::mount(std::env::temp_dir().join(format!("leco-bpffs-pins-{}", std::process::id())));
    let dir = fs.path().join("leco");
    assert!(matches!(pin_state(&dir), PinState::Absent));

    let (capture, handover) = load();
    handover.pin(&dir, None).expect("pin");
    let programs = handover.manifest().program_ids();
    drop(handover);
    drop(capture);
    for (name, id) in &programs {
        assert!(
            program_loaded(*id),
            "{name} (id {id}) unloaded despite its pin"
        );
    }
    match pin_state(&dir) {
        PinState::Complete(m) => assert_eq!(m.program_ids(), programs),
        other => panic!("not complete: {other:?}"),
    }
    let received = Received::from_pins(&dir).expect("from pins");
    assert_eq!(received.manifest().program_ids(), programs);
    drop(received);

    // One pin gone: incomplete, and says which.
    std::fs::remove_file(dir.join("leco-link-on_sock_recv_length")).expect("unpin one");
    match pin_state(&dir) {
        PinState::Incomplete(why) => {
            assert!(why.contains("leco-link-on_sock_recv_length"), "{why}")
        }
        other => panic!("taken for complete: {other:?}"),
    }
    // Manifest gone (a load that stopped before its last step): incomplete.
    std::fs::remove_file(dir.join("leco-manifest")).expect("unpin manifest");
    match pin_state(&dir) {
        PinState::Incomplete(why) => assert!(why.contains("manifest"), "{why}"),
        other => panic!("taken for complete: {other:?}"),
    }

    // Removing the pins unloads the programs.
    assert!(unpin(&dir).expect("unpin") > 3);
    assert!(matches!(pin_state(&dir), PinState::Absent));
    assert_unloaded(&programs);
}

/// A descriptor that is no BPF object: one end of a socket pair.
fn not_bpf() -> OwnedFd {
    let (a, _) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    a.into()
}
