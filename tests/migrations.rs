//! Schema migrations: upgrade with backup, refusal of newer stores.

use c3_migrations::{open_with, MigrateError, Migration, HISTORY, META_TREE, VERSION_KEY};

/// Version 2 of a synthetic history: moves every `notes` entry to
/// `notes_v2` with its value upper-cased.
fn to_v2(db: &sled::Db) -> sled::Result<()> {
    let old = db.open_tree("notes")?;
    let new = db.open_tree("notes_v2")?;
    for item in old.iter() {
        let (k, v) = item?;
        new.insert(k, v.to_ascii_uppercase())?;
    }
    db.drop_tree("notes")?;
    Ok(())
}

fn v1_notes(db: &sled::Db) -> sled::Result<()> {
    db.open_tree("notes")?;
    Ok(())
}

const SYNTHETIC: &[Migration] = &[
    Migration {
        to: 1,
        name: "notes",
        apply: v1_notes,
    },
    Migration {
        to: 2,
        name: "notes upper-cased",
        apply: to_v2,
    },
];

fn version(dir: &std::path::Path) -> u32 {
    let db = c3_migrations::open_db(dir).unwrap();
    let v = db
        .open_tree(META_TREE)
        .unwrap()
        .get(VERSION_KEY)
        .unwrap()
        .unwrap();
    u32::from_be_bytes(v.as_ref().try_into().unwrap())
}

#[test]
fn older_store_is_backed_up_then_migrated() {
    let dir = tempfile::tempdir().unwrap();
    // Build a version-1 store of the synthetic history, with data.
    {
        let o = open_with(dir.path(), &SYNTHETIC[..1]).unwrap();
        assert_eq!((o.from_version, o.backup.is_none()), (0, true));
        let t = o.db.open_tree("notes").unwrap();
        t.insert("a", "hello").unwrap();
        t.insert("b", "world").unwrap();
        o.db.flush().unwrap();
    }
    assert_eq!(version(dir.path()), 1);
    let o = open_with(dir.path(), SYNTHETIC).unwrap();
    assert_eq!(o.from_version, 1);
    let t = o.db.open_tree("notes_v2").unwrap();
    assert_eq!(t.get("a").unwrap().unwrap().as_ref(), b"HELLO");
    assert_eq!(t.get("b").unwrap().unwrap().as_ref(), b"WORLD");
    assert!(!o.db.tree_names().iter().any(|n| n.as_ref() == b"notes"));
    let backup = o.backup.clone().expect("a backup was made");
    drop((t, o));
    assert_eq!(version(dir.path()), 2);
    // The backup is the untouched version-1 store.
    assert_eq!(version(&backup), 1);
    let b = c3_migrations::open_db(&backup).unwrap();
    assert_eq!(
        b.open_tree("notes")
            .unwrap()
            .get("a")
            .unwrap()
            .unwrap()
            .as_ref(),
        b"hello"
    );
    drop(b);
    // Already current: no further backup.
    let again = open_with(dir.path(), SYNTHETIC).unwrap();
    assert_eq!((again.from_version, again.backup.is_none()), (2, true));
}

#[test]
fn newer_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = c3_migrations::open_db(dir.path()).unwrap();
        db.open_tree(META_TREE)
            .unwrap()
            .insert(VERSION_KEY, &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    match open_with(dir.path(), HISTORY) {
        Err(e @ MigrateError::Newer { found: 99, .. }) => assert!(e.to_string().contains("newer")),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a newer store was opened"),
    }
    let msg = c3::store::Store::open(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("99") && msg.contains("newer"), "{msg}");
}

#[test]
fn foreign_database_and_bad_history_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = c3_migrations::open_db(dir.path()).unwrap();
        db.insert("something", "else").unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        open_with(dir.path(), HISTORY),
        Err(MigrateError::NotAStore { .. })
    ));
    let gap = &[Migration {
        to: 2,
        name: "gap",
        apply: v1_notes,
    }];
    let d2 = tempfile::tempdir().unwrap();
    assert!(matches!(
        open_with(d2.path(), gap),
        Err(MigrateError::BadHistory(2))
    ));
}

#[test]
fn new_store_gets_current_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(c3::store::Store::open(dir.path()).unwrap());
    assert_eq!(version(dir.path()), c3_migrations::current_version());
    assert_eq!(c3_migrations::current_version(), 3);
}

/// Copy of `tests/fixtures/v1/store`: a store written by c3 before version
/// 2 (bare integer counters and `sources` entries, no manifest), holding
/// the golden `code.txt` (doc 0) and `chinese.txt` (doc 1).
fn v1_store() -> tempfile::TempDir {
    fixture_store("v1")
}

/// Copy of `tests/fixtures/{version}/store` (its database and, where it
/// has them, its manifest files).
fn fixture_store(version: &str) -> tempfile::TempDir {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
        .join("store");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    for f in std::fs::read_dir(fixture.join("db")).unwrap() {
        let f = f.unwrap();
        // Files only: git keeps no empty `blobs/` (sled makes it).
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), db.join(f.file_name())).unwrap();
        }
    }
    for name in ["manifest.json", "manifest.log"] {
        if fixture.join(name).exists() {
            std::fs::copy(fixture.join(name), dir.path().join(name)).unwrap();
        }
    }
    dir
}

#[test]
fn a_version_1_store_is_upgraded_with_a_backup_and_gets_a_manifest() {
    let dir = v1_store();
    assert_eq!(version(dir.path()), 1);
    let store = c3::store::Store::open_existing(dir.path()).unwrap();
    assert!(store.damage().is_none(), "{:?}", store.damage());
    let docs: Vec<_> = store.documents().map(|d| d.unwrap()).collect();
    assert_eq!(docs.len(), 2);
    assert!(
        docs[0].source.ends_with("golden/texts/code.txt"),
        "{}",
        docs[0].source
    );
    let d = store.find_source(&docs[1].source).unwrap().unwrap();
    assert_eq!(d.id, 1);
    assert_eq!(store.next_doc_id().unwrap(), 2);
    assert!(
        store.check().unwrap().ok(),
        "{:?}",
        store.check().unwrap().problems
    );
    let m = store.manifest_state().expect("a manifest was written");
    assert_eq!(m.docs.len(), 2);
    assert_eq!(m.generation, store.generation().unwrap());
    drop(store);
    assert_eq!(version(dir.path()), 3);
    // The counters and `sources` entries now carry checksums.
    let db = c3_migrations::open_db(dir.path()).unwrap();
    let g = db
        .open_tree(META_TREE)
        .unwrap()
        .get("generation")
        .unwrap()
        .unwrap();
    assert_eq!(g.len(), 16);
    assert!(c3_migrations::v2::unseal_u64(&g).is_some());
    drop(db);
    let backups: Vec<_> = std::fs::read_dir(dir.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        backups.len() == 1 && backups[0].starts_with("schema-v1-"),
        "{backups:?}"
    );
}

// Issue 23: a store written before metadata (schema 2) opens, is backed
// up and upgraded to 3, keeps its documents, checks clean, and takes
// metadata afterwards.
#[test]
fn a_version_2_store_is_upgraded_to_metadata_with_a_backup() {
    let dir = fixture_store("v2");
    assert_eq!(version(dir.path()), 2);
    let store = c3::store::Store::open_existing(dir.path()).unwrap();
    assert!(store.damage().is_none(), "{:?}", store.damage());
    let docs: Vec<_> = store.documents().map(|d| d.unwrap()).collect();
    assert_eq!(docs.len(), 2);
    assert!(docs[0].source.ends_with("golden/texts/code.txt"));
    assert!(docs[1].source.ends_with("golden/texts/chinese.txt"));
    for d in &docs {
        assert!(store.metadata(d.id).unwrap().is_empty());
    }
    let report = store.check().unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let m = c3::docmeta::Metadata::from_json(&serde_json::json!({"kind": "code", "year": 2001}))
        .unwrap();
    assert!(store.set_metadata(docs[0].id, &m).unwrap());
    let sel = store
        .select(&c3::docmeta::Filter::parse_cli(&["kind=code".into()]).unwrap())
        .unwrap();
    assert_eq!(sel.ids(), vec![docs[0].id]);
    drop(store);
    assert_eq!(version(dir.path()), 3);
    let backups: Vec<_> = std::fs::read_dir(dir.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        backups.len() == 1 && backups[0].starts_with("schema-v2-"),
        "{backups:?}"
    );
    // Reopened, the metadata is there and the store still checks clean.
    let store = c3::store::Store::open_existing(dir.path()).unwrap();
    assert_eq!(store.metadata(docs[0].id).unwrap(), m);
    assert!(store.check().unwrap().ok());
}
