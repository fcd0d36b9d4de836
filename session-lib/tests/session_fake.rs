//! The session core (`session::open_session`/`close_session`, `Sessions`'
//! undo, settle and gc) driven through a scripted fake [`PamHost`], on
//! temporary roots, without root and without libpam: the expected host
//! calls are replayed from a queue, in order, and a host dropped with calls
//! left over fails the test (the pattern of kanidm's PAM `TestHandler`).
//!
//! Run as root, the session user is `nobody` (the runtime dir is chowned to
//! it); unprivileged, it is the calling user.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use session_lib::config::{Config, LoginuidPolicy};
use session_lib::procfs::ProcessId;
use session_lib::session::{self, CloseOutcome, DirFate, GcScope, Holder, LogLevel, OpenOutcome, PamHost, Sessions};
use session_lib::user::UserInfo;

/// One expected call of the session logic on its host, with the answer.
#[derive(Debug)]
enum Call {
    User(Result<String, String>),
    Service(String),
    /// `putenv(name, value)` with exactly this value; answers `result`.
    Putenv(String, String, Result<(), String>),
    /// `remember_key(any)`: the fake keeps the key for `RecalledKey`.
    RememberKey,
    /// `recalled_key()`: answers with what was remembered, if anything.
    RecalledKey,
}

struct FakeHost {
    expected: RefCell<VecDeque<Call>>,
    key: RefCell<Option<String>>,
    logs: RefCell<Vec<(LogLevel, String)>>,
}

impl FakeHost {
    fn expect(calls: impl IntoIterator<Item = Call>) -> FakeHost {
        FakeHost {
            expected: RefCell::new(calls.into_iter().collect()),
            key: RefCell::new(None),
            logs: RefCell::new(Vec::new()),
        }
    }

    /// Queue more calls (a second hook on the same handle).
    fn then(&self, calls: impl IntoIterator<Item = Call>) {
        self.expected.borrow_mut().extend(calls);
    }

    fn next(&self, what: &str) -> Call {
        self.expected
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected host call {what}: no more calls were expected"))
    }

    fn logged(&self, level: LogLevel) -> Vec<String> {
        self.logs.borrow().iter().filter(|(l, _)| *l == level).map(|(_, m)| m.clone()).collect()
    }
}

impl PamHost for FakeHost {
    fn user(&mut self) -> Result<String, String> {
        match self.next("user()") {
            Call::User(answer) => answer,
            other => panic!("user() called, expected {other:?}"),
        }
    }

    fn service(&self) -> String {
        match self.next("service()") {
            Call::Service(s) => s,
            other => panic!("service() called, expected {other:?}"),
        }
    }

    fn putenv(&mut self, name: &str, value: &str) -> Result<(), String> {
        match self.next(&format!("putenv({name}, {value})")) {
            Call::Putenv(n, v, answer) if n == name && v == value => answer,
            other => panic!("putenv({name:?}, {value:?}) called, expected {other:?}"),
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn remember_key(&mut self, key: &str) {
        match self.next(&format!("remember_key({key})")) {
            Call::RememberKey => *self.key.borrow_mut() = Some(key.to_string()),
            other => panic!("remember_key({key:?}) called, expected {other:?}"),
        }
    }

    fn recalled_key(&self) -> Option<String> {
        match self.next("recalled_key()") {
            Call::RecalledKey => self.key.borrow().clone(),
            other => panic!("recalled_key() called, expected {other:?}"),
        }
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let left = self.expected.borrow();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("the session logic did not make these expected host calls: {left:?}");
        }
    }
}

/// A temporary root: `<tmp>/user` (runtime dir parent) and `<tmp>/state`,
/// trusted as owned by the caller; removed on drop.
struct Root {
    dir: PathBuf,
    sessions: Sessions,
    user: UserInfo,
}

impl Root {
    fn new(tag: &str, tweak: impl FnOnce(&mut Config)) -> Root {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("js-fake-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let user = if me == 0 {
            UserInfo::by_name("nobody").expect("a `nobody` user")
        } else {
            UserInfo::by_uid(me).expect("the calling user in passwd")
        };
        let mut config = Config {
            runtime_dir_parent: dir.join("user"),
            state_dir: dir.join("state"),
            min_uid: 1,
            tmpfs: false,
            loginuid: LoginuidPolicy::Never,
            // The test process is itself a process of the unprivileged user.
            keep_while_processes: false,
            ..Config::default()
        };
        tweak(&mut config);
        let sessions = Sessions::new(&config).with_trusted_owner(me);
        Root { dir, sessions, user }
    }

    fn runtime_dir(&self) -> PathBuf {
        self.dir.join("user").join(self.user.uid.to_string())
    }

    fn records(&self) -> usize {
        self.sessions.list().unwrap().into_iter().filter(|r| r.uid == self.user.uid).count()
    }

    /// The calls of a successful open: user, service, key, exports.
    fn open_calls(&self) -> Vec<Call> {
        let dir = self.runtime_dir().display().to_string();
        vec![
            Call::User(Ok(self.user.name.clone())),
            Call::Service("fake-svc".into()),
            Call::RecalledKey,
            Call::RememberKey,
            Call::Putenv("XDG_RUNTIME_DIR".into(), dir, Ok(())),
            Call::Putenv("PATH".into(), session_lib::config::DEFAULT_PATH.into(), Ok(())),
        ]
    }

    /// The calls of a close that finds this handle's session: user, key, then
    /// the key forgotten (so a second pam_jupyter line does nothing).
    fn close_calls(&self) -> Vec<Call> {
        vec![Call::User(Ok(self.user.name.clone())), Call::RecalledKey, Call::RememberKey]
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn owner_mode(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.mode() & 0o7777)
}

#[test]
fn open_then_close_makes_and_removes_dir_and_record() {
    let r = Root::new("open", |_| {});
    let mut host = FakeHost::expect(r.open_calls());
    assert_eq!(session::open_session(&mut host, &r.sessions), OpenOutcome::Opened, "{:?}", host.logs);
    assert_eq!(owner_mode(&r.runtime_dir()), (r.user.uid, 0o700));
    assert_eq!(r.records(), 1);
    assert!(host.key.borrow().is_some(), "the key was remembered on the handle");
    assert!(host.logged(LogLevel::Info).iter().any(|m| m.contains("session opened")), "{:?}", host.logs);

    host.then(r.close_calls());
    assert_eq!(session::close_session(&mut host, &r.sessions), CloseOutcome::Closed, "{:?}", host.logs);
    assert_eq!(r.records(), 0);
    assert!(!r.runtime_dir().exists(), "last close removed the dir");
    assert!(host.logged(LogLevel::Error).is_empty(), "{:?}", host.logs);
}

#[test]
fn a_failed_export_undoes_the_open() {
    let r = Root::new("undo", |_| {});
    let mut calls = r.open_calls();
    calls.pop();
    calls.push(Call::Putenv("PATH".into(), session_lib::config::DEFAULT_PATH.into(), Err("PAM_BUF_ERR".into())));
    let mut host = FakeHost::expect(calls);
    let out = session::open_session(&mut host, &r.sessions);
    assert!(matches!(&out, OpenOutcome::Refused(m) if m.contains("cannot export PATH")), "{out:?}");
    assert_eq!(r.records(), 0, "the record was removed again");
    assert!(!r.runtime_dir().exists(), "the dir this open made was removed again");
    assert_eq!(host.logged(LogLevel::Error).len(), 1, "{:?}", host.logs);
}

#[test]
fn users_that_are_not_ours_are_left_alone() {
    let r = Root::new("notours", |_| {});
    let mut host = FakeHost::expect([Call::User(Ok("root".into()))]);
    assert!(matches!(session::open_session(&mut host, &r.sessions), OpenOutcome::NotApplicable(_)));
    host.then([Call::User(Ok("root".into()))]);
    assert!(matches!(session::close_session(&mut host, &r.sessions), CloseOutcome::NotApplicable(_)));
    host.then([Call::User(Ok("no-such-user-js-fake".into()))]);
    assert!(matches!(session::open_session(&mut host, &r.sessions), OpenOutcome::UserUnknown(_)));
    host.then([Call::User(Err("PAM_SYSTEM_ERR".into()))]);
    assert!(
        matches!(session::open_session(&mut host, &r.sessions), OpenOutcome::UserUnknown(m) if m.contains("PAM_SYSTEM_ERR"))
    );
    assert!(!r.dir.join("user").exists(), "nothing was created");
}

#[test]
fn the_last_close_settles_the_dir() {
    let r = Root::new("settle", |_| {});
    // A PAM session and a session by id (a Slurm job) of the same user.
    let mut host = FakeHost::expect(r.open_calls());
    assert_eq!(session::open_session(&mut host, &r.sessions), OpenOutcome::Opened);
    r.sessions.open(&r.user, "slurm", Holder::Id("job-1".into())).unwrap();
    assert_eq!(r.records(), 2);

    host.then(r.close_calls());
    assert_eq!(session::close_session(&mut host, &r.sessions), CloseOutcome::Closed);
    assert!(r.runtime_dir().is_dir(), "another session is open: dir kept");
    assert!(host.logged(LogLevel::Info).iter().any(|m| m.contains("kept")), "{:?}", host.logs);

    let (record, closed) = r.sessions.close_id("job-1").unwrap();
    assert_eq!(record.id.as_deref(), Some("job-1"));
    assert_eq!(closed.dir, DirFate::Removed { stopped_pause: None });
    assert!(!r.runtime_dir().exists());
    assert!(r.sessions.close_id("job-1").is_err(), "an unknown id is an error");
}

#[test]
fn without_remove_on_last_close_the_dir_stays() {
    let r = Root::new("keep", |c| c.remove_on_last_close = false);
    let mut host = FakeHost::expect(r.open_calls());
    assert_eq!(session::open_session(&mut host, &r.sessions), OpenOutcome::Opened);
    host.then(r.close_calls());
    assert_eq!(session::close_session(&mut host, &r.sessions), CloseOutcome::Closed);
    assert_eq!(r.records(), 0);
    assert!(r.runtime_dir().is_dir(), "remove_on_last_close = false keeps it");
}

#[test]
fn gc_reaps_stale_records_expires_ids_and_removes_dirs() {
    let r = Root::new("gc", |_| {});
    // A session whose keeper is gone: a process that already exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = ProcessId::of(child.id()).unwrap_or(ProcessId { pid: child.id(), start_time: 1 });
    child.wait().unwrap();
    r.sessions.open(&r.user, "fake-svc", Holder::Process(dead)).unwrap();
    assert!(r.runtime_dir().is_dir());
    let report = r.sessions.gc(None, &GcScope::default()).unwrap();
    assert_eq!(report.reaped.len(), 1, "{report:?}");
    assert_eq!(report.removed_dirs, vec![r.runtime_dir()], "{report:?}");
    assert!(!r.runtime_dir().exists());

    // A session by id lives until closed, or until gc's age limit.
    r.sessions.open(&r.user, "slurm", Holder::Id("job-2".into())).unwrap();
    let report = r.sessions.gc(None, &GcScope::default()).unwrap();
    assert!(report.expired.is_empty() && report.removed_dirs.is_empty(), "{report:?}");
    assert_eq!(report.kept_dirs.len(), 1, "{report:?}");
    assert!(r.runtime_dir().is_dir());
    let report = r.sessions.gc(Some(0), &GcScope::default()).unwrap();
    assert_eq!(report.expired.len(), 1, "{report:?}");
    assert_eq!(report.removed_dirs, vec![r.runtime_dir()]);
    assert_eq!(r.records(), 0);
}

/// The same Root with another configuration.
fn reconfigured(r: &mut Root, tweak: impl FnOnce(&mut Config)) {
    let mut config = r.sessions.config.clone();
    tweak(&mut config);
    r.sessions = Sessions::new(&config).with_trusted_owner(nix::unistd::geteuid().as_raw());
}

#[test]
fn gc_never_expires_lingering_users_and_is_scoped() {
    let mut r = Root::new("gc-scope", |_| {});
    let name = r.user.name.clone();
    reconfigured(&mut r, |c| c.service_users = vec![name.clone()]);
    r.sessions.open(&r.user, "svc", Holder::Id("svc-api".into())).unwrap();
    let report = r.sessions.gc(Some(0), &GcScope::default()).unwrap();
    assert!(report.expired.is_empty() && report.removed_dirs.is_empty(), "{report:?}");
    assert_eq!(report.kept_lingering.len(), 1, "{report:?}");
    assert_eq!(r.records(), 1);
    assert!(r.runtime_dir().is_dir());

    // Not lingering: scoped by another uid or another prefix, nothing happens.
    reconfigured(&mut r, |c| c.service_users.clear());
    let other = GcScope { uid: Some(r.user.uid + 1), id_prefix: None };
    assert!(r.sessions.gc(Some(0), &other).unwrap().expired.is_empty());
    let prefix = GcScope { uid: None, id_prefix: Some("slurm-".into()) };
    let report = r.sessions.gc(Some(0), &prefix).unwrap();
    assert!(report.expired.is_empty() && report.kept_dirs.is_empty(), "untouched: {report:?}");
    assert_eq!(r.records(), 1);
    let mine = GcScope { uid: Some(r.user.uid), id_prefix: Some("svc-".into()) };
    let report = r.sessions.gc(Some(0), &mine).unwrap();
    assert_eq!(report.expired.len(), 1, "{report:?}");
    assert_eq!(report.removed_dirs, vec![r.runtime_dir()]);
}

#[test]
fn ensure_makes_lingering_dirs_idempotently_and_refuses_others() {
    let mut r = Root::new("ensure", |_| {});
    let err = r.sessions.ensure(&r.user).unwrap_err().to_string();
    assert!(err.contains("neither on linger_users nor on service_users"), "{err}");
    assert!(!r.runtime_dir().exists());
    let name = r.user.name.clone();
    reconfigured(&mut r, |c| c.min_uid = u32::MAX);
    let err = r.sessions.ensure(&r.user).unwrap_err().to_string();
    assert!(err.contains("below min_uid"), "{err}");
    reconfigured(&mut r, |c| c.service_users = vec![name.clone()]);
    let first = r.sessions.ensure(&r.user).unwrap();
    assert!(first.created && r.runtime_dir().is_dir(), "{first:?}");
    let again = r.sessions.ensure(&r.user).unwrap();
    assert!(!again.created && r.runtime_dir().is_dir(), "{again:?}");
    assert_eq!(r.records(), 0, "no session is recorded");
    // Lingering: gc keeps it; once it no longer lingers, gc removes it (it is recorded as ours).
    assert!(r.sessions.gc(None, &GcScope::default()).unwrap().removed_dirs.is_empty());
    assert!(r.runtime_dir().is_dir());
    reconfigured(&mut r, |c| {
        c.service_users.clear();
        c.min_uid = 1;
    });
    assert_eq!(r.sessions.gc(None, &GcScope::default()).unwrap().removed_dirs, vec![r.runtime_dir()]);
}

#[test]
fn a_dir_logind_took_over_is_left_to_logind() {
    // pam_jupyter before pam_systemd: pam_jupyter makes the dir, then logind
    // starts tracking the user (and adopts the dir, which it removes itself).
    let mut r = Root::new("logind", |_| {});
    let logind = r.dir.join("systemd");
    r.sessions.logind = session_lib::logind::Logind::at(&logind);
    let mut host = FakeHost::expect(r.open_calls());
    assert_eq!(session::open_session(&mut host, &r.sessions), OpenOutcome::Opened, "{:?}", host.logs);
    std::fs::create_dir_all(logind.join("seats")).unwrap();
    std::fs::create_dir_all(logind.join("users")).unwrap();
    std::fs::write(logind.join("users").join(r.user.uid.to_string()), "STATE=active\n").unwrap();

    host.then(r.close_calls());
    assert_eq!(session::close_session(&mut host, &r.sessions), CloseOutcome::Closed, "{:?}", host.logs);
    assert_eq!(r.records(), 0);
    assert!(r.runtime_dir().is_dir(), "logind's now: not removed by pam_jupyter");
    assert!(host.logged(LogLevel::Info).iter().any(|m| m.contains("systemd-logind manages it")), "{:?}", host.logs);
    // Handed over for good: once logind lets the user go (and removed the
    // dir), gc has nothing of the user to settle.
    std::fs::remove_file(logind.join("users").join(r.user.uid.to_string())).unwrap();
    std::fs::remove_dir(r.runtime_dir()).unwrap();
    let report = r.sessions.gc(None, &GcScope::default()).unwrap();
    assert!(report.removed_dirs.is_empty() && report.kept_dirs.is_empty(), "{report:?}");
}

#[test]
fn an_unprivileged_close_does_nothing_and_gc_user_settles_it() {
    // systemd's (sd-pam) closes after dropping to the user.
    let r = Root::new("sdpam", |_| {});
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = ProcessId::of(child.id()).unwrap_or(ProcessId { pid: child.id(), start_time: 1 });
    child.wait().unwrap();
    r.sessions.open(&r.user, "fake-svc", Holder::Process(dead)).unwrap();
    let mut host = FakeHost::expect([Call::User(Ok(r.user.name.clone()))]);
    let not_root = r.user.uid.max(1) + 1;
    let out = session::close_session_as(&mut host, &r.sessions, not_root);
    assert!(matches!(&out, CloseOutcome::NotApplicable(m) if m.contains("gc --user")), "{out:?}");
    assert!(host.logged(LogLevel::Error).is_empty() && host.logged(LogLevel::Warning).is_empty(), "{:?}", host.logs);
    assert!(host.logged(LogLevel::Info).iter().any(|m| m.contains("runs without privileges")), "{:?}", host.logs);
    assert!(r.runtime_dir().is_dir(), "nothing touched");

    let report = r.sessions.gc_user(&r.user, None, &GcScope::default()).unwrap();
    assert_eq!(report.reaped.len(), 1, "{report:?}");
    assert_eq!(report.removed_dirs, vec![r.runtime_dir()], "{report:?}");
    assert!(!r.runtime_dir().exists());
}

#[test]
#[should_panic(expected = "did not make these expected host calls")]
fn the_fake_fails_when_calls_are_left_over() {
    let _host = FakeHost::expect([Call::Service("never asked".into())]);
}

#[test]
fn pam_jupyter_twice_in_one_stack_opens_and_closes_one_session() {
    // /etc/pam.d/jupyterhub's own line plus `pam-auth-update --enable
    // jupyter-session`'s line in common-session: two pam_jupyter hooks on
    // one handle. The second open and the second close do nothing.
    let r = Root::new("twice", |_| {});
    let mut host = FakeHost::expect(r.open_calls());
    assert_eq!(session::open_session(&mut host, &r.sessions), OpenOutcome::Opened, "{:?}", host.logs);
    host.then([Call::User(Ok(r.user.name.clone())), Call::Service("fake-svc".into()), Call::RecalledKey]);
    let second = session::open_session(&mut host, &r.sessions);
    assert!(matches!(&second, OpenOutcome::AlreadyOpen(m) if m.contains("listed twice")), "{second:?}");
    assert_eq!(r.records(), 1, "one session, not two");

    host.then(r.close_calls());
    assert_eq!(session::close_session(&mut host, &r.sessions), CloseOutcome::Closed, "{:?}", host.logs);
    assert_eq!(r.records(), 0);
    assert!(!r.runtime_dir().exists(), "the last close removed the dir");
    host.then([Call::User(Ok(r.user.name.clone())), Call::RecalledKey]);
    let again = session::close_session(&mut host, &r.sessions);
    assert!(matches!(&again, CloseOutcome::NotApplicable(m) if m.contains("already closed")), "{again:?}");
    assert!(host.logged(LogLevel::Error).is_empty() && host.logged(LogLevel::Warning).is_empty(), "{:?}", host.logs);

    // The handle can open a new session after its close.
    host.then(r.open_calls());
    assert_eq!(session::open_session(&mut host, &r.sessions), OpenOutcome::Opened, "{:?}", host.logs);
    host.then(r.close_calls());
    assert_eq!(session::close_session(&mut host, &r.sessions), CloseOutcome::Closed);
}
