//! The crate's layering, as docs/architecture.md draws it: every module of `src/` may use the
//! modules of its own layer and the layers below, never a layer above. The check reads the
//! sources: every `crate::<module>` path outside comments must name a module of this table at
//! or below the file's layer (root re-exports such as `crate::Backend` are refused too, so that
//! each import says which layer it comes from).

use std::collections::BTreeMap;
use std::path::Path;

/// Top-level modules and their layers, bottom up (the table of docs/architecture.md).
const LAYERS: &[(&str, usize)] = &[
    // Leaves: no imports from the crate.
    ("adapter", 0),
    ("op", 0),
    ("rng", 0),
    ("shape", 0),
    ("error", 1),
    ("special", 2),
    ("backend", 3),
    ("distr", 4),
    ("forecast", 5),
    ("nn", 5),
    ("hub", 5),
    ("eval", 5),
    ("table", 5),
    ("toto", 6),
    ("toto2", 6),
    ("auto", 7),
    ("multi", 8),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

/// The code of a Rust source without its comments (line comments, doc comments included).
fn without_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal is rare in this crate; a URL would only hide the
            // rest of its own line.
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names through `crate::`, each with its position.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut rest = code;
    let mut offset = 0;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let preceded = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !preceded {
            if let Some(group) = after.strip_prefix('{') {
                // `crate::{a, b::c}`: the first segment of each top-level item.
                let mut depth = 0;
                let end = group
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => return true,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        false
                    })
                    .map_or(group.len(), |(j, _)| j);
                let mut depth = 0;
                let mut item = String::new();
                for c in group[..end].chars().chain([',']) {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            let name: String = item
                                .trim()
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            if !name.is_empty() {
                                found.push((offset + i, name));
                            }
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push((offset + i, name));
            }
        }
        offset += i + "crate::".len();
        rest = &rest[i + "crate::".len()..];
    }
    found
}

/// Every layering violation of the file at `path` (relative to `src/`) with `source`.
fn violations(path: &str, source: &str) -> Vec<String> {
    let top = path
        .split('/')
        .next()
        .unwrap_or(path)
        .trim_end_matches(".rs");
    if top == "lib" {
        return Vec::new(); // The root declares and re-exports; it has no layer.
    }
    let Some(own) = layer_of(top) else {
        return vec![format!(
            "src/{path}: module `{top}` has no layer; add it to LAYERS and \
             docs/architecture.md"
        )];
    };
    let code = without_comments(source);
    let line_of = |pos: usize| code[..pos].lines().count().max(1);
    crate_paths(&code)
        .into_iter()
        .filter_map(|(pos, name)| match layer_of(&name) {
            Some(l) if l <= own => None,
            Some(l) => Some(format!(
                "src/{path}:{}: `crate::{name}` (layer {l}) is above `{top}` (layer {own})",
                line_of(pos)
            )),
            None => Some(format!(
                "src/{path}:{}: `crate::{name}` is not a module; import it from the module that \
                 defines it",
                line_of(pos)
            )),
        })
        .collect()
}

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under src/");
            let rel = rel.to_string_lossy().replace('\\', "/");
            out.insert(
                rel,
                std::fs::read_to_string(&path).expect("readable source"),
            );
        }
    }
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let root = Path::new("src");
    let mut files = BTreeMap::new();
    sources(root, root, &mut files);
    assert!(files.len() > 40, "found only {} sources", files.len());
    let problems: Vec<String> = files
        .iter()
        .flat_map(|(path, source)| violations(path, source))
        .collect();
    assert!(
        problems.is_empty(),
        "layering violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_layer_check_catches_what_it_must() {
    // Upward imports, plain and grouped, and root re-exports are caught; comments, downward
    // imports and the file's own module are not.
    let upward = violations("special/x.rs", "use crate::backend::Backend;\n");
    assert_eq!(upward.len(), 1, "{upward:?}");
    assert!(upward[0].contains("src/special/x.rs:1"), "{upward:?}");
    let grouped = violations(
        "backend/y.rs",
        "use crate::{error::Error, distr::{Normal, Gamma}};\n",
    );
    assert_eq!(grouped.len(), 1, "{grouped:?}");
    assert!(grouped[0].contains("crate::distr"), "{grouped:?}");
    let inline = violations("distr/z.rs", "fn f() { crate::toto::Toto::random(); }");
    assert_eq!(inline.len(), 1, "{inline:?}");
    assert_eq!(violations("toto/a.rs", "use crate::Backend;").len(), 1);
    assert_eq!(
        violations("newthing.rs", "").len(),
        1,
        "unknown modules have no layer"
    );
    let fine = "//! See [`crate::toto::Toto`].\nuse crate::error::Result; // crate::toto\n\
                use crate::special::{lgamma, digamma};\nuse crate::backend::Backend;";
    assert_eq!(violations("backend/ok.rs", fine), Vec::<String>::new());
}

/// What model code must not contain: questions about the device or backend it runs on. Speed
/// comes from the backend's layer ops (`LayerOps`), which each backend implements its own way;
/// model code (Toto 1.0, Toto 2.0, the shared `nn` parts) is written once.
const DEVICE_QUESTIONS: &[&str] = &[
    "is_cpu",
    "is_ndarray",
    "forward_host",
    "as_dispatch",
    "DispatchDevice",
    "Device::ndarray",
    "NdArray",
    "Wgpu",
    "cpu::",
];

/// The model directories whose code must not ask where it runs.
const MODEL_CODE: &[&str] = &["toto/", "toto2/", "nn/"];

/// Every device question in the non-test code of a model file at `path` (relative to `src/`).
fn device_questions(path: &str, source: &str) -> Vec<String> {
    if !MODEL_CODE.iter().any(|dir| path.starts_with(dir)) {
        return Vec::new();
    }
    let code = without_comments(source);
    // Unit tests may build a backend to run on.
    let code = code.split("#[cfg(test)]").next().unwrap_or("");
    code.lines()
        .enumerate()
        .flat_map(|(i, line)| {
            DEVICE_QUESTIONS
                .iter()
                .filter(|q| line.contains(*q))
                .map(move |q| format!("src/{path}:{}: `{q}` in model code", i + 1))
        })
        .collect()
}

#[test]
fn model_code_never_asks_where_it_runs() {
    let root = Path::new("src");
    let mut files = BTreeMap::new();
    sources(root, root, &mut files);
    let models = files
        .keys()
        .filter(|p| MODEL_CODE.iter().any(|d| p.starts_with(d)));
    assert!(models.count() > 20, "the model directories moved");
    let problems: Vec<String> = files
        .iter()
        .flat_map(|(path, source)| device_questions(path, source))
        .collect();
    assert!(
        problems.is_empty(),
        "model code asks which device it runs on; make the fast path a layer op \
         (backend::LayerOps) instead:\n{}",
        problems.join("\n")
    );
    // The check itself: it sees a question in model code, not in a backend or a test module.
    assert_eq!(device_questions("toto2/x.rs", "if is_cpu(&d) {}").len(), 1);
    assert!(device_questions("backend/x.rs", "if is_cpu(&d) {}").is_empty());
    let test_only = "fn f() {}\n#[cfg(test)]\nmod tests { use crate::backend::NdArray; }";
    assert!(device_questions("toto/x.rs", test_only).is_empty());
}

/// Every `unsafe` block and `unsafe impl` in the code of `source`, each with whether a
/// `SAFETY` comment precedes it within six lines (or shares its line).
fn unsafe_sites(source: &str) -> Vec<(usize, bool)> {
    let lines: Vec<&str> = source.lines().collect();
    let code = |line: &str| line.split("//").next().unwrap_or("").to_owned();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let c = code(l);
            c.contains("unsafe {") || c.contains("unsafe impl")
        })
        .map(|(i, _)| {
            let from = i.saturating_sub(6);
            (i + 1, lines[from..=i].iter().any(|l| l.contains("SAFETY")))
        })
        .collect()
}

#[test]
fn every_unsafe_block_is_counted_and_justified() {
    let root = Path::new("src");
    let mut files = BTreeMap::new();
    sources(root, root, &mut files);
    let mut count = 0;
    let mut unjustified = Vec::new();
    for (path, source) in &files {
        for (line, justified) in unsafe_sites(source) {
            count += 1;
            if !justified {
                unjustified.push(format!("src/{path}:{line}"));
            }
        }
    }
    assert!(
        unjustified.is_empty(),
        "unsafe code without a SAFETY note:\n{}",
        unjustified.join("\n")
    );
    let doc = std::fs::read_to_string("docs/architecture.md").unwrap();
    let stated = format!("{count} unsafe sites");
    assert!(
        doc.contains(&stated),
        "docs/architecture.md (\"Unsafe code\") must say \"{stated}\": the count changed"
    );
    // The check itself.
    let sites = unsafe_sites(
        "// SAFETY: fine.\nlet x = unsafe { f() };\nunsafe impl Send for X {}\n\n\n\n\n\n\nunsafe { g() }",
    );
    assert_eq!(sites, [(2, true), (3, true), (10, false)]);
}

/// Where the crate computes attention and sorts on the device: one attention core (the
/// composition `LayerOps::attention_core` defaults to, plus Toto 1.0's shared-prefix variant,
/// which attends over a prefix shared by every sample path), and one sort network (the bitonic
/// `sort_last`/`sort_first` compositions). Each finding is `file: what`.
fn second_implementations(path: &str, source: &str) -> Vec<String> {
    const ATTENTION: &[&str] = &["backend/layers/composed.rs", "nn/attention.rs"];
    const SORT: &[&str] = &[
        "backend/layers/composed.rs", // the network
        "backend/layers/mod.rs",      // the trait's method
        "backend/layers/cpu.rs",      // NdArray's host sort of the op
        "backend/fallback/layers.rs", // the fallback's routing of the op
        "backend/wgpu/mod.rs",        // Wgpu's choice between its kernel and the network
        "backend/ops/sort/kernel.rs", // Wgpu's kernel of the op
        "backend/ops/sort/launch.rs", // its launch
        "backend/ops/sort/tensor.rs", // and its entry point
    ];
    let code = without_comments(source);
    let mut found = Vec::new();
    if code.contains("softmax(") && !ATTENTION.contains(&path) {
        found.push(format!(
            "src/{path}: a second attention core (softmax); call LayerOps::attention_core"
        ));
    }
    if code.contains("fn sort") && !SORT.contains(&path) {
        found.push(format!(
            "src/{path}: a second device sort; call LayerOps::sort_first (or composed::sort_last)"
        ));
    }
    found
}

#[test]
fn one_attention_core_and_one_sort() {
    let root = Path::new("src");
    let mut files = BTreeMap::new();
    sources(root, root, &mut files);
    let problems: Vec<String> = files
        .iter()
        .flat_map(|(path, source)| second_implementations(path, source))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check itself: an odd-even network or a softmax in model code is found.
    let odd_even = "fn sort_rows(x: Tensor<2>) -> Tensor<2> { a.mask_where(swap, b) }";
    assert_eq!(
        second_implementations("toto2/forecast.rs", odd_even).len(),
        1
    );
    let inline = "let w = softmax(q.matmul(k), 3);";
    assert_eq!(
        second_implementations("toto2/attention.rs", inline).len(),
        1
    );
    assert!(second_implementations("toto2/attention.rs", "// softmax( in a comment").is_empty());
}
