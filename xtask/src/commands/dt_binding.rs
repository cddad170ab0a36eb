// SPDX-License-Identifier: GPL-2.0-or-later
//! The device-tree binding, `docs/bindings/qemu,stopwatch.yaml`, checked
//! with dt-schema's `dt-validate` (the `dtschema` package, installed from
//! PyPI into the cache's Python venv) against the trees the patched QEMU
//! generates: 1 and 3 stopwatches, GICv2 and GICv3. Planted bad nodes
//! (each a real tree with one thing broken) must fail it, every run.
//!
//! Validation is limited to the binding's own schema (`-l`): dt-schema
//! alone does not know the types of the properties that only Linux's
//! bindings define (PSCI's function ids, `cfi-flash`'s `bank-width`,
//! `gpio-keys`' `linux,code`), so the rest of QEMU's tree fails its core
//! schema on them. The test counts those findings in its verdict, and
//! checks that none of them is about a stopwatch node.

use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::cache::Cache;
use crate::util::{run_captured, stdout_of};
use system_tests::inspect;
use system_tests::repo::Repo;
use system_tests::vm::{Gic, VmConfig};

/// The binding, relative to the repository.
pub const BINDING: &str = "docs/bindings/qemu,stopwatch.yaml";

/// What pip installs: dt-schema and its libfdt binding (built from source:
/// PyPI has no wheel of it, hence swig and python3-dev among the Debian
/// packages).
const REQUIREMENTS: [&str; 2] = ["dtschema==2026.9", "pylibfdt==1.7.2.post2"];

/// The `$id` substring that limits validation to the binding's schema.
const SCHEMA_ID: &str = "qemu,stopwatch";

/// Installs dt-schema into the cache's venv if needed; returns the venv's
/// `bin/` directory.
fn ensure_dtschema(cache: &Cache) -> Result<PathBuf> {
    let python = crate::build::debian::repack::python_venv(cache)?;
    let bin = python.parent().context("venv python without a directory")?;
    let installed = |requirement: &str| {
        let (name, version) = requirement.split_once("==").expect("pinned");
        Command::new(&python)
            .args(["-m", "pip", "show", "--quiet", name])
            .output()
            .is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|line| line == format!("Version: {version}"))
            })
    };
    if !REQUIREMENTS.iter().all(|r| installed(r)) {
        eprintln!(
            "    installing {} into {}",
            REQUIREMENTS.join(" "),
            bin.display()
        );
        run_captured(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet"])
                .args(REQUIREMENTS),
        )
        .context("could not install dt-schema (pylibfdt builds with swig and python3-dev)")?;
    }
    Ok(bin.to_path_buf())
}

/// One finding of `dt-validate --json-output`.
#[derive(Debug)]
struct Finding {
    node: String,
    schema: String,
    message: String,
}

/// Runs dt-validate on `dtb` with the binding; `limit`: only its schema.
fn validate(bin: &Path, binding: &Path, dtb: &Path, limit: bool) -> Result<Vec<Finding>> {
    let json = dtb.with_extension("json");
    let _ = std::fs::remove_file(&json);
    let mut command = Command::new(bin.join("dt-validate"));
    if limit {
        command.args(["-l", SCHEMA_ID]);
    }
    // dt-validate exits 0 whatever it finds: the findings are the answer.
    run_captured(
        command
            .arg("-s")
            .arg(binding)
            .arg("--json-output")
            .arg(&json)
            .arg(dtb),
    )?;
    let text = std::fs::read_to_string(&json)
        .with_context(|| format!("dt-validate wrote no {}", json.display()))?;
    let _ = std::fs::remove_file(&json);
    let list: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    Ok(list
        .iter()
        .map(|finding| {
            let field = |name: &str| finding[name].as_str().unwrap_or_default().to_string();
            Finding {
                node: field("node"),
                schema: field("schema"),
                message: field("message"),
            }
        })
        .collect())
}

/// `dtc` from source to blob.
fn compile(dts: &str, dtb: &Path) -> Result<()> {
    let source = dtb.with_extension("dts");
    std::fs::write(&source, dts)?;
    run_captured(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(dtb)
            .arg(&source),
    )
    .with_context(|| format!("dtc could not compile {}", source.display()))?;
    Ok(())
}

/// A tree with one thing of the first stopwatch node broken, and what
/// dt-validate must then say about it.
struct Plant {
    what: &'static str,
    from: &'static str,
    to: &'static str,
    expected: &'static str,
}

const PLANTS: [Plant; 4] = [
    Plant {
        what: "reg-names dropped",
        from: "reg-names = \"shared\", \"regs\";",
        to: "",
        expected: "'reg-names' is a required property",
    },
    Plant {
        what: "a property the binding does not have",
        from: "reg-names = \"shared\", \"regs\";",
        to: "reg-names = \"shared\", \"regs\";\n\t\t\tclock-frequency = <0x3b9aca00>;",
        expected: "'clock-frequency'",
    },
    Plant {
        what: "the original's compatible alone",
        from: "compatible = \"qemu,stopwatch\", \"stopwatch\";",
        to: "compatible = \"stopwatch\";",
        expected: "'qemu,stopwatch' was expected",
    },
    Plant {
        what: "the regions' names swapped",
        from: "reg-names = \"shared\", \"regs\";",
        to: "reg-names = \"regs\", \"shared\";",
        expected: "'shared' was expected",
    },
];

/// The test: the generated trees pass, every plant fails, the binding's
/// example passes. Returns the verdict's summary.
pub fn run(repo: &Repo, cache: &Cache) -> Result<String> {
    let bin = ensure_dtschema(cache)?;
    let binding = repo.root.join(BINDING);
    let scratch = repo.vm_dir().join("dt-binding");
    std::fs::create_dir_all(&scratch)?;

    // The binding itself, against dt-schema's meta-schema.
    let doc = run_captured(Command::new(bin.join("dt-doc-validate")).arg(&binding))?;
    let complaints =
        String::from_utf8_lossy(&doc.stderr).into_owned() + &String::from_utf8_lossy(&doc.stdout);
    ensure!(
        complaints.trim().is_empty(),
        "dt-doc-validate on {BINDING}:\n{complaints}"
    );

    // Its example, as Linux's dt_binding_check does it.
    let example = stdout_of(Command::new(bin.join("dt-extract-example")).arg(&binding))?;
    let example_dtb = scratch.join("example.dtb");
    compile(&example, &example_dtb)?;
    let findings = validate(&bin, &binding, &example_dtb, true)?;
    ensure!(
        findings.is_empty(),
        "the binding's example fails it: {findings:#?}"
    );

    let mut trees = 0;
    let mut nodes = 0;
    let mut first_dts = None;
    let mut last_dtb = None;
    for gic in [Gic::V2, Gic::V3] {
        for devices in [1, 3] {
            let config = VmConfig {
                gic: Some(gic),
                devices,
                ..VmConfig::default()
            };
            let blob = inspect::dump_dtb(repo, &config)?;
            let dtb = scratch.join(format!("virt-{gic:?}-{devices}.dtb"));
            std::fs::write(&dtb, &blob)?;
            // dtc writes a string list as "a\0b" or as "a", "b" depending
            // on its version: the second form here.
            let dts = inspect::decompile(&blob)?.replace("\\0", "\", \"");
            let found = dts
                .matches("compatible = \"qemu,stopwatch\", \"stopwatch\";")
                .count();
            ensure!(
                found == devices,
                "{config} with {devices} stopwatches: {found} nodes with the binding's compatible"
            );
            let findings = validate(&bin, &binding, &dtb, true)?;
            ensure!(
                findings.is_empty(),
                "{config}, {devices} stopwatches: the generated tree breaks the binding:\n{}",
                describe(&findings)
            );
            trees += 1;
            nodes += devices;
            first_dts.get_or_insert(dts);
            last_dtb = Some(dtb);
        }
    }

    // The planted bad nodes: each must fail, with the expected complaint
    // about a stopwatch node.
    let dts = first_dts.expect("at least one tree");
    for (index, plant) in PLANTS.iter().enumerate() {
        ensure!(
            dts.contains(plant.from),
            "no `{}` to plant into:\n{dts}",
            plant.from
        );
        let planted = dts.replacen(plant.from, plant.to, 1);
        let dtb = scratch.join(format!("planted-{index}.dtb"));
        compile(&planted, &dtb)?;
        let findings = validate(&bin, &binding, &dtb, true)?;
        let caught = findings
            .iter()
            .any(|f| f.node.contains("/stopwatch@") && f.message.contains(plant.expected));
        if !caught {
            bail!(
                "planted bad node ({}) passed the binding; dt-validate said:\n{}",
                plant.what,
                describe(&findings)
            );
        }
    }

    // The rest of QEMU's tree, unlimited: what dt-schema alone makes of it.
    let whole = validate(&bin, &binding, &last_dtb.expect("a tree"), false)?;
    let ours: Vec<&Finding> = whole
        .iter()
        .filter(|f| f.node.contains("/stopwatch@"))
        .collect();
    ensure!(
        ours.is_empty(),
        "unlimited validation complains about the stopwatch: {ours:#?}"
    );
    let other_schemas: std::collections::BTreeSet<&str> =
        whole.iter().map(|f| f.schema.as_str()).collect();

    Ok(format!(
        "{trees} trees ({nodes} nodes) pass, {} planted bad nodes fail; rest of the tree: {} \
         findings of {:?}, none about the stopwatch",
        PLANTS.len(),
        whole.len(),
        other_schemas
    ))
}

fn describe(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "  (nothing)".into();
    }
    findings
        .iter()
        .map(|f| format!("  {}: {} ({})", f.node, f.message, f.schema))
        .collect::<Vec<_>>()
        .join("\n")
}
