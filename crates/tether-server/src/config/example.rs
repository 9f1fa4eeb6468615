//! What people read about the settings, made from [`settings`]: the
//! commented file `tether config example` prints, and the table of
//! docs/CONFIG.md (`tether config reference`), which a test keeps equal.

use super::settings::{sections, settings, Setting};

/// A commented configuration file with every setting at its default, as
/// `tether config example` prints it.
pub fn example() -> String {
    let mut out = String::from(
        "# tether serve configuration. Every setting is optional; shown at its default.\n\
         # Precedence: defaults < this file (--config) < TETHER_* variables < flags.\n\
         # Durations take a unit: \"25s\", \"500ms\", \"2m\", \"1h\".\n",
    );
    let top = settings()
        .iter()
        .filter(|setting| setting.section.is_empty());
    for setting in top {
        entry(&mut out, setting);
    }
    for section in sections() {
        out.push('\n');
        comment(&mut out, &section.doc);
        out.push_str(&format!("[{}]\n", section.name));
        for setting in settings().iter().filter(|s| s.section == section.name) {
            entry(&mut out, setting);
        }
        if section.name == "channels" {
            out.push_str(
                "\n# Per-namespace overrides, e.g. for channels \"scores:*\" (each key not\n\
                 # given keeps its [channels] value):\n\
                 # [namespaces.scores]\n\
                 # history_size = 1000\n\
                 # publish = \"nobody\"\n",
            );
        }
    }
    out
}

fn entry(out: &mut String, setting: &Setting) {
    out.push('\n');
    comment(out, &setting.doc);
    match &setting.default {
        Some(value) => out.push_str(&format!("{} = {value}\n", setting.name)),
        None => out.push_str(&format!("# {} = (unset)\n", setting.name)),
    }
}

/// `text` as `# ` lines of at most 78 columns.
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 78 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
}

/// The table of every setting for docs/CONFIG.md, as `tether config
/// reference` prints it.
pub fn reference() -> String {
    let mut out = String::from("| setting | default | meaning |\n| --- | --- | --- |\n");
    for setting in settings() {
        let also = setting
            .alias
            .as_ref()
            .map(|alias| format!(" (also `--{alias}`)"))
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{}`{also} | `{}` | {} |\n",
            setting.key,
            setting.default_text(),
            setting.doc.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, ServerConfig};

    #[test]
    fn the_example_reads_back_as_the_defaults() {
        let path = std::env::temp_dir().join(format!("tether-example-{}.toml", std::process::id()));
        std::fs::write(&path, example()).unwrap();
        let loaded = load(Some(&path), [], &[]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.unwrap().config, ServerConfig::default());
    }

    #[test]
    fn the_example_shows_every_setting() {
        let example = example();
        for setting in settings() {
            let shown = example.lines().any(|line| {
                let line = line.trim_start_matches("# ");
                line.starts_with(&format!("{} = ", setting.name))
            });
            assert!(shown, "{} is not in the example", setting.key);
        }
    }

    #[test]
    fn docs_config_md_has_the_table_of_every_setting() {
        let docs = include_str!("../../../../docs/CONFIG.md");
        let table = reference();
        assert!(
            docs.contains(&table),
            "docs/CONFIG.md's settings table is not what the code declares; \
             replace it with the output of `tether config reference`:\n{table}"
        );
    }
}
