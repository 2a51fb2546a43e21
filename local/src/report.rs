//! `imagegram-local iam-report LOG`: the AWS calls a run made (the guard's
//! JSON lines, `IMAGEGRAM_IAM_LOG`) against each function's policy in
//! `template.yaml`. A call refused is a missing grant; a statement that
//! allowed no call is a grant nothing needs (least privilege). Either fails
//! the report.

use std::collections::BTreeMap;
use std::path::Path;

use crate::stack::FUNCTIONS;
use crate::template::{BoxError, Stack, Template};

#[derive(serde::Deserialize)]
struct Call {
    function: String,
    operation: String,
    action: String,
    resource: String,
    allowed_by: Vec<usize>,
}

pub fn run(template: &Path, log: &Path) -> Result<(), BoxError> {
    let text =
        std::fs::read_to_string(log).map_err(|e| format!("cannot read {}: {e}", log.display()))?;
    let calls: Vec<Call> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let mut stack = Stack::new("<stack>", "<account>", "<region>");
    stack.placeholders = true;
    let t = Template::load(template, stack)?;
    let mut problems = Vec::new();
    println!(
        "AWS calls of the local run ({}), by function and statement:",
        calls.len()
    );
    for function in FUNCTIONS {
        let policy = t.function_policy(function)?;
        let mine: Vec<&Call> = calls.iter().filter(|c| c.function == *function).collect();
        println!("\n{function}: {} calls", mine.len());
        let mut by_operation: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for c in &mine {
            *by_operation.entry((&c.operation, &c.action)).or_default() += 1;
            if c.allowed_by.is_empty() {
                problems.push(format!(
                    "{function}: {} ({} on {}) was refused: template.yaml lacks the grant",
                    c.operation, c.action, c.resource
                ));
            }
        }
        for ((op, action), n) in by_operation {
            println!("  {op:<28} {action:<32} {n:>6}");
        }
        for (i, (actions, resources)) in policy.grants() {
            let used = mine.iter().filter(|c| c.allowed_by.contains(&i)).count();
            println!(
                "  statement {i}: {} on {}: allowed {used} calls",
                actions.join(", "),
                resources.join(", ")
            );
            if used == 0 {
                problems.push(format!(
                    "{function}: statement {i} ({} on {}) allowed no call: remove it, or add a \
                     test that needs it",
                    actions.join(", "),
                    resources.join(", ")
                ));
            }
        }
    }
    if problems.is_empty() {
        println!("\nevery call was allowed, and every grant was needed");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("iam-report: {p}");
        }
        Err(format!("{} IAM problem(s)", problems.len()).into())
    }
}
