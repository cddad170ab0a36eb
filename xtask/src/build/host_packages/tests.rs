// SPDX-License-Identifier: GPL-2.0-or-later
//! The package table against docs/hosts.md, host detection, and installing
//! through fake package managers: small shell scripts on PATH that record
//! their arguments, answer queries from a list of missing packages, and
//! refuse package names their distribution does not have (the names
//! docs/hosts.md lists for it).

use super::*;
use std::os::unix::fs::PermissionsExt;

/// Sourced by every fake (which first sets a PATH for the shell's own
/// tools and its state directory `D`): the queries and the install step
/// shared by the fake installers.
const FAKE_LIB: &str = r#"
# The lists as " a b c ", read with builtins only: a query asks about
# every package, and a process per name would make the tests slow.
words_of() { all=" "; while IFS= read -r word; do all="$all$word "; done < "$1"; }
words_of "$D/known"; KNOWN=$all
words_of "$D/missing"; MISSING=$all
known() { case "$KNOWN" in *" $1 "*) return 0 ;; esac; return 1; }
installed() {
    known "$1" || return 1
    case "$MISSING" in *" $1 "*) return 1 ;; esac
}
# Installs the words that are not options nor the verb `install`; an
# unknown name fails the whole command, as the real managers do.
install_words() {
    for word; do
        case "$word" in -*|install) continue ;; esac
        if ! known "$word"; then
            echo "fake: no package named $word" >&2
            exit 100
        fi
    done
    for word; do
        grep -vxF -- "$word" "$D/missing" > "$D/missing.new"
        mv "$D/missing.new" "$D/missing"
    done
}
"#;

/// The fakes, by program name.
const FAKES: &[(&str, &str)] = &[
    (
        "apt-get",
        r#"echo "${DEBIAN_FRONTEND:+DEBIAN_FRONTEND=$DEBIAN_FRONTEND }apt-get $*" >> "$D/log"
[ "$1" = install ] || exit 0
install_words "$@""#,
    ),
    (
        "dpkg-query",
        r#"shift 2
for name; do
    if installed "$name"; then echo "$name install ok installed"
    else echo "dpkg-query: no packages found matching $name" >&2; fi
done"#,
    ),
    (
        "rpm",
        r#"shift 2
status=0
for name; do
    if installed "$name"; then echo "$name-1.0-1.x86_64"
    else echo "no package provides $name"; status=1; fi
done
exit $status"#,
    ),
    (
        "pacman",
        r#"if [ "$1" = -T ]; then
    shift
    status=0
    for name; do installed "$name" || { echo "$name"; status=127; }; done
    exit $status
fi
echo "pacman $*" >> "$D/log"
install_words "$@""#,
    ),
    (
        "dnf",
        r#"echo "dnf $*" >> "$D/log"
install_words "$@""#,
    ),
    (
        "zypper",
        r#"echo "zypper $*" >> "$D/log"
install_words "$@""#,
    ),
    (
        "sudo",
        r#"echo "sudo $*" >> "$D/log"
[ "$1" = -n ] && shift
[ -e "$D/sudo-works" ] || exit 1
[ "$1" = true ] && exit 0
if [ "$1" = env ]; then
    shift
    while case "$1" in *=*) true ;; *) false ;; esac; do export "$1"; shift; done
fi
program=$1
shift
exec "$D/bin/$program" "$@""#,
    ),
];

/// A scratch directory with the fakes in `bin/` and their state.
struct FakeHost {
    dir: PathBuf,
}

impl FakeHost {
    /// `known`: the package names the fake distribution has; `missing`:
    /// those of them not installed.
    fn new(label: &str, known: &[&str], missing: &[&str]) -> FakeHost {
        let dir = env::temp_dir().join(format!("xtask-fakepm-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bin")).unwrap();
        for (name, body) in FAKES {
            let script = format!(
                "#!/bin/sh\nPATH=/usr/bin:/bin\nD=$(dirname \"$0\")/..\n. \"$D/fake-lib.sh\"\n{body}\n"
            );
            let path = dir.join("bin").join(name);
            fs::write(&path, script).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(dir.join("fake-lib.sh"), FAKE_LIB).unwrap();
        let lines = |names: &[&str]| names.iter().map(|n| format!("{n}\n")).collect::<String>();
        fs::write(dir.join("known"), lines(known)).unwrap();
        fs::write(dir.join("missing"), lines(missing)).unwrap();
        fs::write(dir.join("log"), "").unwrap();
        FakeHost { dir }
    }

    fn allow_sudo(&self) {
        fs::write(self.dir.join("sudo-works"), "").unwrap();
    }

    fn without_sudo(&self) {
        fs::remove_file(self.dir.join("bin/sudo")).unwrap();
    }

    fn host(&self, root: bool) -> HostEnv {
        HostEnv {
            os_release: self.dir.join("no-os-release"),
            path: self.dir.join("bin").into_os_string(),
            root,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap()
    }

    fn still_missing(&self) -> String {
        fs::read_to_string(self.dir.join("missing")).unwrap()
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One row of docs/hosts.md's package table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DocRow {
    what: String,
    debian_source_only: bool,
    /// apt, dnf, pacman, zypper.
    packages: [Option<String>; 4],
}

const DEBIAN_SOURCE_MARK: &str = " (Debian source only)";

fn hosts_doc() -> String {
    let path = crate::repo::Repo::locate().root.join("docs/hosts.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The table docs/hosts.md shows, rendered from [`NEEDS`].
fn render_table() -> String {
    let cell = |name: Option<&str>| name.map_or("—".to_string(), |n| format!("`{n}`"));
    let mut table = String::from(
        "| Needed | apt (Debian, Ubuntu) | dnf (Fedora) | pacman (Arch) | zypper (openSUSE) | Why |\n\
         |---|---|---|---|---|---|\n",
    );
    for need in NEEDS {
        let mark = match need.when {
            When::Always => "",
            When::DebianSource => DEBIAN_SOURCE_MARK,
        };
        table += &format!(
            "| {}{mark} | {} | {} | {} | {} | {} |\n",
            need.what,
            cell(need.apt),
            cell(need.dnf),
            cell(need.pacman),
            cell(need.zypper),
            need.why
        );
    }
    table
}

/// docs/hosts.md's package table, read back: the names each distribution
/// has, written down independently of the code.
fn doc_rows() -> Vec<DocRow> {
    let doc = hosts_doc();
    let start = doc
        .find("| Needed | apt")
        .expect("docs/hosts.md has no package table");
    doc[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let name = |cell: &str| {
                let name = cell.trim_matches('`');
                (cell.starts_with('`') && !name.is_empty()).then(|| name.to_string())
            };
            DocRow {
                what: cells[0].trim_end_matches(DEBIAN_SOURCE_MARK).to_string(),
                debian_source_only: cells[0].ends_with(DEBIAN_SOURCE_MARK),
                packages: [
                    name(cells[1]),
                    name(cells[2]),
                    name(cells[3]),
                    name(cells[4]),
                ],
            }
        })
        .collect()
}

fn column(manager: Manager) -> usize {
    Manager::ALL.iter().position(|m| *m == manager).unwrap()
}

/// Every name docs/hosts.md gives for `manager`: what its fake has.
fn doc_names(rows: &[DocRow], manager: Manager) -> Vec<String> {
    rows.iter()
        .filter_map(|row| row.packages[column(manager)].clone())
        .collect()
}

#[test]
fn docs_show_the_code_s_package_table() {
    let table = render_table();
    assert!(
        hosts_doc().contains(&table),
        "docs/hosts.md's package table differs from host_packages::NEEDS; the table from the \
         code:\n{table}"
    );
}

/// The install commands each manager must record, written out in full.
fn expected_log(manager: Manager, packages: &str) -> String {
    match manager {
        Manager::Apt => format!(
            "DEBIAN_FRONTEND=noninteractive apt-get update\n\
             DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {packages}\n"
        ),
        Manager::Dnf => format!("dnf install -y {packages}\n"),
        Manager::Pacman => format!("pacman -S --needed --noconfirm {packages}\n"),
        Manager::Zypper => format!("zypper --non-interactive install {packages}\n"),
    }
}

#[test]
fn as_root_each_row_s_package_is_installed_with_each_manager_s_command() {
    let rows = doc_rows();
    // One thread per manager: some 90 fake installs in all.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = Manager::ALL
            .into_iter()
            .map(|manager| {
                let rows = &rows;
                scope.spawn(move || each_row_as_root(rows, manager))
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Installs each row's package of `manager` as root on a fake host that
/// lacks only that package; returns what went wrong.
fn each_row_as_root(rows: &[DocRow], manager: Manager) -> Vec<String> {
    let known = doc_names(rows, manager);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let mut failures = Vec::new();
    for row in rows {
        let Some(package) = &row.packages[column(manager)] else {
            continue;
        };
        let fake = FakeHost::new(&format!("row-{}", manager.name()), &known, &[package]);
        let result = ensure(&fake.host(true), manager, true, None);
        let want = expected_log(manager, package);
        let log = fake.log();
        if result.is_err() || log != want || !fake.still_missing().is_empty() {
            failures.push(format!(
                "{} / {}: recorded {log:?}, expected {want:?}; result {:?}",
                manager.name(),
                row.what,
                result.map_err(|e| format!("{e:#}"))
            ));
        }
    }
    failures
}

#[test]
fn debian_source_packages_are_needed_only_on_the_debian_source_path() {
    let rows = doc_rows();
    let debian_only: Vec<&str> = rows
        .iter()
        .filter(|row| row.debian_source_only)
        .filter_map(|row| row.packages[column(Manager::Apt)].as_deref())
        .collect();
    assert_eq!(debian_only, ["dpkg-dev", "debian-archive-keyring"]);
    let without = needed(Manager::Apt, false, None);
    let with = needed(Manager::Apt, true, None);
    for package in &debian_only {
        assert!(
            !without.iter().any(|(name, _)| name == package),
            "{package}"
        );
        assert!(with.iter().any(|(name, _)| name == package), "{package}");
    }
    // Nothing else installs from Debian's archive: no row elsewhere.
    for need in NEEDS.iter().filter(|n| n.when == When::DebianSource) {
        for manager in [Manager::Dnf, Manager::Pacman, Manager::Zypper] {
            assert_eq!(manager.package_of(need), None, "{}", need.what);
        }
    }
    // Missing, but not needed: nothing is installed.
    let known = doc_names(&rows, Manager::Apt);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let fake = FakeHost::new("tarball", &known, &debian_only);
    ensure(&fake.host(true), Manager::Apt, false, None).unwrap();
    assert_eq!(fake.log(), "");
}

#[test]
fn with_password_less_sudo_the_commands_run_through_sudo() {
    let rows = doc_rows();
    for manager in Manager::ALL {
        let known = doc_names(&rows, manager);
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let missing = [known[1], known[3]];
        let fake = FakeHost::new(&format!("sudo-{}", manager.name()), &known, &missing);
        fake.allow_sudo();
        ensure(&fake.host(false), manager, false, None).unwrap();
        let packages = missing.join(" ");
        let want = match manager {
            Manager::Apt => format!(
                "sudo -n true\n\
                 sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update\n\
                 DEBIAN_FRONTEND=noninteractive apt-get update\n\
                 sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y \
                 --no-install-recommends {packages}\n\
                 DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                 {packages}\n"
            ),
            _ => {
                let direct = expected_log(manager, &packages);
                format!("sudo -n true\nsudo -n {direct}{direct}")
            }
        };
        assert_eq!(fake.log(), want, "{}", manager.name());
        assert_eq!(fake.still_missing(), "", "{}", manager.name());
    }
}

#[test]
fn without_root_or_sudo_the_exact_command_is_printed_and_nothing_runs() {
    let rows = doc_rows();
    for manager in Manager::ALL {
        let known = doc_names(&rows, manager);
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let missing = [known[2], known[4]];
        let packages = missing.join(" ");
        let command = match manager {
            Manager::Apt => format!(
                "sudo apt-get update && sudo apt-get install -y --no-install-recommends {packages}"
            ),
            Manager::Dnf => format!("sudo dnf install -y {packages}"),
            Manager::Pacman => format!("sudo pacman -S --needed --noconfirm {packages}"),
            Manager::Zypper => format!("sudo zypper --non-interactive install {packages}"),
        };
        // sudo there but asking for a password, then no sudo at all.
        for sudo_present in [true, false] {
            let fake = FakeHost::new(&format!("nosudo-{}", manager.name()), &known, &missing);
            if !sudo_present {
                fake.without_sudo();
            }
            let error = ensure(&fake.host(false), manager, false, None).unwrap_err();
            let message = format!("{error:#}");
            assert!(
                message.contains(&format!("missing {} packages ({packages})", manager.name()))
                    && message.contains("neither root nor password-less sudo")
                    && message.contains(&format!("run:\n  {command}\n")),
                "{}: {message}",
                manager.name()
            );
            let want_log = if sudo_present { "sudo -n true\n" } else { "" };
            assert_eq!(fake.log(), want_log, "{}", manager.name());
        }
    }
}

#[test]
fn a_missing_extra_package_stops_even_when_everything_else_is_there() {
    let rows = doc_rows();
    let known = doc_names(&rows, Manager::Apt);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let fake = FakeHost::new("extra", &known, &[]);
    ensure(&fake.host(false), Manager::Apt, true, None).unwrap();
    assert_eq!(fake.log(), "", "everything installed: no sudo, no install");
    let error = ensure(
        &fake.host(false),
        Manager::Apt,
        true,
        Some("no-such-package"),
    )
    .unwrap_err();
    assert!(
        format!("{error:#}").contains(
            "sudo apt-get update && sudo apt-get install -y --no-install-recommends \
             no-such-package\n"
        ),
        "{error:#}"
    );
}

/// A PATH directory holding empty executables named `programs`.
fn tools_dir(label: &str, programs: &[&str]) -> PathBuf {
    let dir = env::temp_dir().join(format!("xtask-tools-{label}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for program in programs {
        let path = dir.join(program);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn detect_with(label: &str, os_release: Option<&str>, programs: &[&str]) -> Result<Manager> {
    let dir = tools_dir(label, programs);
    let release = dir.join("os-release");
    if let Some(text) = os_release {
        fs::write(&release, text).unwrap();
    }
    let found = detect(&HostEnv {
        os_release: release,
        path: dir.clone().into_os_string(),
        root: false,
    });
    let _ = fs::remove_dir_all(&dir);
    found
}

#[test]
fn the_host_s_manager_comes_from_os_release_and_the_tools_present() {
    let cases: &[(&str, Option<&str>, &[&str], Manager)] = &[
        (
            "debian",
            Some("ID=debian\n"),
            &["apt-get", "dpkg-query"],
            Manager::Apt,
        ),
        (
            "ubuntu",
            Some("NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n"),
            &["apt-get"],
            Manager::Apt,
        ),
        (
            "mint",
            Some("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"),
            &["apt-get"],
            Manager::Apt,
        ),
        ("fedora", Some("ID=fedora\n"), &["dnf", "rpm"], Manager::Dnf),
        (
            "rocky",
            Some("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n"),
            &["dnf"],
            Manager::Dnf,
        ),
        ("arch", Some("ID=arch\n"), &["pacman"], Manager::Pacman),
        (
            "tumbleweed",
            Some("ID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n"),
            &["zypper", "rpm"],
            Manager::Zypper,
        ),
        (
            "leap",
            Some("ID=\"opensuse-leap\"\n"),
            &["zypper"],
            Manager::Zypper,
        ),
        // A Debian host with rpm and dnf installed is still Debian.
        (
            "debian-with-dnf",
            Some("ID=debian\n"),
            &["apt-get", "dnf", "rpm"],
            Manager::Apt,
        ),
        // No os-release, or one naming a manager that is not there: the tools.
        ("no-release", None, &["pacman"], Manager::Pacman),
        (
            "unknown-id",
            Some("ID=someos\n"),
            &["zypper"],
            Manager::Zypper,
        ),
        (
            "fedora-without-dnf",
            Some("ID=fedora\n"),
            &["apt-get"],
            Manager::Apt,
        ),
    ];
    for (label, release, programs, want) in cases {
        let found = detect_with(label, *release, programs);
        assert_eq!(found.ok(), Some(*want), "{label}");
    }
    let error = detect_with("none", Some("ID=debian\n"), &["rpm"]).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("found none of apt-get, dnf, pacman or zypper")
            && error.to_string().contains("libglib2.0-dev"),
        "{error}"
    );
}

#[test]
fn reads_ids_from_os_release() {
    assert_eq!(
        os_ids(
            "NAME=\"openSUSE Tumbleweed\"\nID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n"
        ),
        ["opensuse-tumbleweed", "opensuse", "suse"]
    );
    assert_eq!(os_ids("ID_LIKE=debian\nID=Ubuntu\n"), ["ubuntu", "debian"]);
    assert!(os_ids("").is_empty());
}
