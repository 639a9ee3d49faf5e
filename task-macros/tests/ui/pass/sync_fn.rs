use task_core::{task, TaskResult};

#[task]
fn resize(path: String, width: u32) -> TaskResult<String> {
    Ok(format!("{path}@{width}"))
}

/// A plain return type is wrapped in `Ok`; no return type is `()`.
#[task]
fn shout(text: String) -> String {
    text.to_uppercase()
}

#[task]
fn nothing() {}

fn main() {
    assert_eq!(resize("a".into(), 2).unwrap(), "a@2");
    let _: task_core::Signature<String> = shout::signature("x".into());
    let _: task_core::Signature<()> = nothing::signature();
}
