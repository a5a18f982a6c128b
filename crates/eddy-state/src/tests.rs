use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eddy-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A row's key length that stores it whole (see `Checkpoint::set_row`).
const WHOLE: usize = usize::MAX;

fn rows_of(store: &Store, id: u64) -> Vec<(Vec<u8>, i64)> {
    let mut rows = Vec::new();
    store
        .rows(id, &[], |row, count| {
            rows.push((row.to_vec(), count));
            true
        })
        .expect("rows");
    rows
}

#[test]
fn a_snapshot_reads_what_was_there_when_it_was_taken() {
    let dir = temp_dir("snapshot");
    let store = Arc::new(Store::open(&dir, &StoreOptions::default()).expect("open"));
    let mut checkpoint = Checkpoint::default();
    checkpoint.add_row(3, b"\xffa", 2);
    checkpoint.set_row(3, b"\xffb", WHOLE, 1);
    checkpoint.add_row(3, b"c", 1);
    checkpoint.add_row(4, b"\xffd", 1);
    store.commit(checkpoint, 1).expect("commit");
    let snapshot = store.snapshot();
    let mut checkpoint = Checkpoint::default();
    checkpoint.add_row(3, b"\xffa", -2);
    checkpoint.add_row(3, b"\xffb", 4);
    checkpoint.add_row(3, b"\xffe", 1);
    store.commit(checkpoint, 2).expect("commit");
    let read = |snapshot: &StoreSnapshot, limit: usize| {
        let mut rows = Vec::new();
        snapshot
            .rows(3, b"\xff", |row, count| {
                rows.push((row.to_vec(), count));
                rows.len() < limit
            })
            .expect("rows");
        rows
    };
    assert_eq!(
        read(&snapshot, usize::MAX),
        vec![(b"a".to_vec(), 2), (b"b".to_vec(), 1)]
    );
    assert_eq!(read(&snapshot, 1), vec![(b"a".to_vec(), 2)]);
    assert_eq!(snapshot.row(3, b"\xff", b"b", WHOLE).expect("row"), 1);
    assert_eq!(snapshot.row(3, b"\xff", b"e", WHOLE).expect("row"), 0);
    let now = store.snapshot();
    assert_eq!(
        read(&now, usize::MAX),
        vec![(b"b".to_vec(), 5), (b"e".to_vec(), 1)]
    );
    drop((snapshot, now, store));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_row_stored_under_its_key_is_replaced_by_the_next_row_of_that_key() {
    let dir = temp_dir("by-key");
    let store = Arc::new(Store::open(&dir, &StoreOptions::default()).expect("open"));
    let mut checkpoint = Checkpoint::default();
    checkpoint.set_row(5, b"k1A", 2, 1);
    checkpoint.set_row(5, b"k2B", 2, 1);
    checkpoint.set_row(5, b"k3C", 2, 1);
    store.commit(checkpoint, 1).expect("commit");
    assert_eq!(
        rows_of(&store, 5),
        vec![
            (b"k1A".to_vec(), 1),
            (b"k2B".to_vec(), 1),
            (b"k3C".to_vec(), 1)
        ]
    );
    let mut checkpoint = Checkpoint::default();
    // The new row of a key set before the old one is removed, and after.
    checkpoint.set_row(5, b"k1D", 2, 1);
    checkpoint.set_row(5, b"k1A", 2, 0);
    checkpoint.set_row(5, b"k2B", 2, 0);
    checkpoint.set_row(5, b"k2E", 2, 1);
    // Set and removed again: the stored row goes.
    checkpoint.set_row(5, b"k3F", 2, 1);
    checkpoint.set_row(5, b"k3C", 2, 0);
    checkpoint.set_row(5, b"k3F", 2, 0);
    store.commit(checkpoint, 2).expect("commit");
    assert_eq!(
        rows_of(&store, 5),
        vec![(b"k1D".to_vec(), 1), (b"k2E".to_vec(), 1)]
    );
    let snapshot = store.snapshot();
    assert_eq!(snapshot.row(5, b"", b"k1D", 2).expect("row"), 1);
    assert_eq!(snapshot.row(5, b"", b"k1A", 2).expect("row"), 0);
    assert_eq!(snapshot.row(5, b"", b"k3C", 2).expect("row"), 0);
    let mut found = Vec::new();
    snapshot
        .with_points(5, b"", |points| {
            for key in [b"k2".as_slice(), b"k3", b"k1"] {
                points
                    .rows(key, |rest, count| {
                        found.push((key.to_vec(), rest.to_vec(), count));
                        true
                    })
                    .expect("rows");
            }
        })
        .expect("points");
    assert_eq!(
        found,
        vec![
            (b"k2".to_vec(), b"E".to_vec(), 1),
            (b"k1".to_vec(), b"D".to_vec(), 1)
        ]
    );
    drop((snapshot, store));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn commits_survive_reopening() {
    let dir = temp_dir("reopen");
    {
        let store = Store::open(&dir, &StoreOptions::default()).expect("open");
        assert_eq!(store.last_checkpoint().expect("read"), None);
        let mut checkpoint = Checkpoint::default();
        checkpoint.add_object(ObjectRecord {
            id: 3,
            name: "t".into(),
            definition: "CREATE TABLE t (a INT)".into(),
        });
        checkpoint.add_row(3, b"x", 2);
        checkpoint.add_row(3, b"y", 1);
        store.commit(checkpoint, 7).expect("commit");
        let mut checkpoint = Checkpoint::default();
        checkpoint.add_row(3, b"x", -1);
        checkpoint.add_row(3, b"y", -1);
        checkpoint.add_row(4, b"z", 5);
        store.commit(checkpoint, 8).expect("commit");
    }
    let store = Store::open(&dir, &StoreOptions::default()).expect("reopen");
    assert_eq!(
        store.objects().expect("objects"),
        vec![ObjectRecord {
            id: 3,
            name: "t".into(),
            definition: "CREATE TABLE t (a INT)".into()
        }]
    );
    assert_eq!(rows_of(&store, 3), vec![(b"x".to_vec(), 1)]);
    assert_eq!(rows_of(&store, 4), vec![(b"z".to_vec(), 5)]);
    // Set counts and deltas mix: a delta adds to a set count and a set
    // count replaces the deltas before it.
    let mut checkpoint = Checkpoint::default();
    checkpoint.set_row(4, b"w", WHOLE, 1);
    checkpoint.set_row(4, b"z", WHOLE, 2);
    store.commit(checkpoint, 8).expect("commit");
    let mut checkpoint = Checkpoint::default();
    checkpoint.add_row(4, b"w", 2);
    checkpoint.add_row(4, b"z", -1);
    checkpoint.set_row(3, b"x", WHOLE, 0);
    store.commit(checkpoint, 8).expect("commit");
    assert_eq!(
        rows_of(&store, 4),
        vec![(b"w".to_vec(), 3), (b"z".to_vec(), 1)]
    );
    assert!(rows_of(&store, 3).is_empty());
    let mut checkpoint = Checkpoint::default();
    checkpoint.add_row(3, b"x", 1);
    store.commit(checkpoint, 8).expect("commit");
    let last = store
        .last_checkpoint()
        .expect("read")
        .expect("a checkpoint");
    assert_eq!(last.epoch, 8);
    assert!(last.bytes > 0);

    let mut checkpoint = Checkpoint::default();
    checkpoint.put(3, b"o0", b"41");
    checkpoint.put(3, b"o1", b"7");
    checkpoint.put(4, b"o0", b"1");
    store.commit(checkpoint, 9).expect("commit");
    let mut checkpoint = Checkpoint::default();
    checkpoint.delete(3, b"o1");
    store.commit(checkpoint, 9).expect("commit");
    let mut state = Vec::new();
    store
        .state(3, &[], |k, v| state.push((k.to_vec(), v.to_vec())))
        .expect("state");
    assert_eq!(state, vec![(b"o0".to_vec(), b"41".to_vec())]);

    let mut checkpoint = Checkpoint::default();
    checkpoint.drop_object(3);
    store.commit(checkpoint, 9).expect("commit");
    assert!(store.objects().expect("objects").is_empty());
    assert!(rows_of(&store, 3).is_empty());
    assert_eq!(rows_of(&store, 4).len(), 2, "other objects keep their rows");
    let mut state = Vec::new();
    store
        .state(3, &[], |k, _| state.push(k.to_vec()))
        .expect("state");
    assert!(state.is_empty(), "dropping an object drops its state");
    store
        .state(4, &[], |k, _| state.push(k.to_vec()))
        .expect("state");
    assert_eq!(state, vec![b"o0".to_vec()]);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn state_under_a_prefix_reads_only_its_entries() {
    let dir = temp_dir("under");
    let store = Store::open(&dir, &StoreOptions::default()).expect("open");
    let mut checkpoint = Checkpoint::default();
    for key in [&b"a"[..], b"ab", b"ab\xff", b"ac", b"\xff", b"\xff\xff"] {
        checkpoint.put(5, key, key);
    }
    checkpoint.put(6, b"ab", b"other object");
    store.commit(checkpoint, 1).expect("commit");
    let under = |prefix: &[u8]| {
        let found = store.state_under(5, prefix).expect("state");
        for (key, value) in &found {
            assert_eq!(&[prefix, key].concat(), value, "its value");
        }
        found.into_iter().map(|(key, _)| key).collect::<Vec<_>>()
    };
    assert_eq!(under(b"ab"), [&b""[..], b"\xff"]);
    assert_eq!(under(b"\xff"), [&b""[..], b"\xff"]);
    assert_eq!(under(b"b"), Vec::<Vec<u8>>::new());
    assert_eq!(under(b"").len(), 6);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn state_from_a_key_reads_the_next_entries_under_a_prefix() {
    let dir = temp_dir("from");
    let store = Store::open(&dir, &StoreOptions::default()).expect("open");
    let mut checkpoint = Checkpoint::default();
    for key in [&b"a"[..], b"ab", b"ab\x00", b"ab\xff", b"ac", b"b"] {
        checkpoint.put(5, key, key);
    }
    checkpoint.put(6, b"ab", b"other object");
    store.commit(checkpoint, 1).expect("commit");
    let from = |prefix: &[u8], start: &[u8], limit: usize| {
        let found = store.state_from(5, prefix, start, limit).expect("state");
        for (key, value) in &found {
            assert_eq!(&[prefix, key].concat(), value, "its value");
        }
        found.into_iter().map(|(key, _)| key).collect::<Vec<_>>()
    };
    assert_eq!(from(b"", b"ab\x00", 2), [&b"ab\x00"[..], b"ab\xff"]);
    assert_eq!(from(b"", b"ab\x01", 9), [&b"ab\xff"[..], b"ac", b"b"]);
    assert_eq!(from(b"a", b"b\x00", 9), [&b"b\x00"[..], b"b\xff", b"c"]);
    assert_eq!(from(b"a", b"", 1), [&b""[..]]);
    assert_eq!(from(b"a", b"d", 9), Vec::<Vec<u8>>::new());
    assert_eq!(from(b"ab", b"", 0), Vec::<Vec<u8>>::new());
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_format_is_refused() {
    let dir = temp_dir("format");
    {
        let store = Store::open(&dir, &StoreOptions::default()).expect("open");
        let meta = store.family(META).expect("meta");
        store
            .db
            .put_cf(meta, FORMAT_KEY, 99u64.to_be_bytes())
            .expect("put");
    }
    let error = Store::open(&dir, &StoreOptions::default()).expect_err("refused");
    assert!(error.to_string().contains("format 99"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint sums the changes of each row, in the order they were
/// added, and a clear drops what came before it for its object only.
#[test]
fn a_checkpoint_sums_row_changes_and_clears_in_order() {
    let dir = temp_dir("summed");
    let store = Store::open(&dir, &StoreOptions::default()).expect("open");
    let mut checkpoint = Checkpoint::default();
    checkpoint.add_row(1, b"kept", 1);
    checkpoint.add_row(1, b"undone", 1);
    checkpoint.add_row(1, b"undone", -1);
    checkpoint.set_row(1, b"set", WHOLE, 1);
    checkpoint.add_row(1, b"set", 2);
    checkpoint.add_row(2, b"cleared", 1);
    checkpoint.clear_object(2);
    checkpoint.add_row(2, b"after", 1);
    checkpoint.put(1, b"entry", b"first");
    checkpoint.put(1, b"entry", b"last");
    checkpoint.put(1, b"removed", b"x");
    checkpoint.delete(1, b"removed");
    checkpoint.put(3, b"cleared", b"x");
    checkpoint.clear_object(3);
    checkpoint.put(3, b"after", b"y");
    store.commit(checkpoint, 1).expect("commit");
    let entries = |id: u64| {
        let mut entries = Vec::new();
        store
            .state(id, &[], |key, value| {
                entries.push((key.to_vec(), value.to_vec()))
            })
            .expect("state");
        entries
    };
    assert_eq!(entries(1), vec![(b"entry".to_vec(), b"last".to_vec())]);
    assert_eq!(entries(3), vec![(b"after".to_vec(), b"y".to_vec())]);
    assert_eq!(
        rows_of(&store, 1),
        vec![(b"kept".to_vec(), 1), (b"set".to_vec(), 3)]
    );
    assert_eq!(rows_of(&store, 2), vec![(b"after".to_vec(), 1)]);
    let mut checkpoint = Checkpoint::default();
    checkpoint.add_row(1, b"set", 5);
    checkpoint.set_row(1, b"set", WHOLE, 0);
    checkpoint.add_row(1, b"kept", -1);
    checkpoint.add_row(1, b"kept", 1);
    store.commit(checkpoint, 2).expect("commit");
    assert_eq!(rows_of(&store, 1), vec![(b"kept".to_vec(), 1)]);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
