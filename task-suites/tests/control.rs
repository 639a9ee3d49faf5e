//! The task-control, workflow and beat suites on `memory://`.

use task_core::App;
use task_suites::control::AppHarness;

async fn setup() -> AppHarness {
    let memory = App::memory();
    let builder = App::builder().broker(memory.broker().clone()).backend(memory.backend().clone());
    AppHarness { builder, keep_alive: None }
}

task_suites::control_tests!(setup);
task_suites::workflow_tests!(setup);
task_suites::beat_tests!(setup);
