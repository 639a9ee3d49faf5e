use task_core::{task, TaskResult};

/// Parameters named like the generated code's locals must not clash.
#[task]
async fn clash(app: String, ctx: u8, bytes: Vec<u8>, args: bool) -> TaskResult<usize> {
    Ok(app.len() + ctx as usize + bytes.len() + args as usize)
}

fn main() {
    let _ = clash::signature("a".into(), 1, vec![], true);
}
