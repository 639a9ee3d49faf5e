//! A task's state as Celery's Redis result backend keeps it.

use serde_json::{Map, Value};

/// The state Celery's backend shows for `meta`, when Celery has one for it (not for
/// PENDING). Progress is Celery's custom `PROGRESS` state with the task's progress as
/// its `result` (what `self.update_state(state="PROGRESS", meta=..)` stores).
pub(crate) fn meta_of(meta: &task_core::TaskMeta) -> Option<ResultMeta> {
    use task_core::TaskState;
    let text = || meta.error.clone().unwrap_or_default();
    Some(match meta.state {
        TaskState::Success => {
            let value =
                meta.result.as_deref().and_then(|r| rmp_serde::from_slice::<Value>(r).ok()).unwrap_or(Value::Null);
            ResultMeta::Success(value)
        }
        TaskState::Failure => {
            let text = text();
            let (kind, message) = python_exception(&text);
            ResultMeta::Failure { kind: kind.into(), message: message.into() }
        }
        TaskState::Started => ResultMeta::Started,
        TaskState::Retry => ResultMeta::Retry { message: text() },
        TaskState::Revoked => ResultMeta::Revoked { reason: text() },
        TaskState::Progress => ResultMeta::Other {
            status: "PROGRESS".into(),
            result: meta
                .progress
                .as_deref()
                .and_then(|p| rmp_serde::from_slice::<Value>(p).ok())
                .unwrap_or(Value::Null),
        },
        _ => return None,
    })
}

/// Python's built-in exceptions a Rust error may name, so Python raises that very class
/// (`except ValueError:` in the caller works as with a Python worker).
const BUILTIN_EXCEPTIONS: &[&str] = &[
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "ConnectionError",
    "EOFError",
    "Exception",
    "FileExistsError",
    "FileNotFoundError",
    "IndexError",
    "KeyError",
    "LookupError",
    "MemoryError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PermissionError",
    "RuntimeError",
    "TimeoutError",
    "TypeError",
    "UnicodeError",
    "ValueError",
    "ZeroDivisionError",
];

/// The Python exception a Rust error's text is stored as: `ValueError: pages must be
/// positive` names a built-in exception (raised as `ValueError("pages must be
/// positive")`); any other text is Celery's generic `TaskError` with the whole text.
pub fn python_exception(text: &str) -> (&str, &str) {
    match text.split_once(": ") {
        Some((name, message)) if BUILTIN_EXCEPTIONS.contains(&name) => (name, message),
        _ => ("TaskError", text),
    }
}

/// The module Celery imports an exception class `kind` from: `builtins` for Python's
/// own, `celery.exceptions` for Celery's; none for the classes Celery makes up by name.
fn module_of(kind: &str) -> Value {
    if BUILTIN_EXCEPTIONS.contains(&kind) {
        Value::String("builtins".into())
    } else if matches!(kind, "ChordError" | "TaskRevokedError" | "TimeLimitExceeded" | "SoftTimeLimitExceeded") {
        Value::String("celery.exceptions".into())
    } else {
        Value::Null
    }
}

/// The class and text of an exception as Celery stores it (`{"exc_type",
/// "exc_message": [..], ..}`, the arguments joined); what is not one, as its JSON.
pub(crate) fn exception_of(stored: &Value) -> (String, String) {
    let kind = stored.get("exc_type").and_then(Value::as_str).unwrap_or("Exception").to_owned();
    let message = match stored.get("exc_message") {
        Some(Value::Array(parts)) => {
            parts.iter().map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned)).collect::<Vec<_>>().join(", ")
        }
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => stored.to_string(),
    };
    (kind, message)
}

/// The key of a task's state in Celery's Redis result backend.
pub fn result_key(id: &str) -> String {
    format!("celery-task-meta-{id}")
}

/// A task's state as Celery's Redis result backend stores it: the JSON string at
/// [`result_key`], set with its expiry and `PUBLISH`ed on the key's name (what a waiting
/// `AsyncResult.get()` listens to).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResultMeta {
    /// Ended with this value (JSON).
    Success(Value),
    /// Ended with an error: Python raises an exception of type `kind` (created by
    /// Celery, a subclass of `Exception`) with `message`.
    Failure {
        /// The exception's class name.
        kind: String,
        /// Its text.
        message: String,
    },
    /// Running (a worker took it).
    Started,
    /// Failed, to be retried.
    Retry {
        /// Why it failed.
        message: String,
    },
    /// Revoked.
    Revoked {
        /// Why.
        reason: String,
    },
    /// A state of Celery's or the task's own (`RECEIVED`, `PROGRESS`, …), not final.
    Other {
        /// Its name.
        status: String,
        /// Its `result` field (a task's `meta=`).
        result: Value,
    },
}

impl ResultMeta {
    /// Celery's name of the state.
    pub fn status(&self) -> &'static str {
        match self {
            ResultMeta::Success(_) => "SUCCESS",
            ResultMeta::Failure { .. } => "FAILURE",
            ResultMeta::Started => "STARTED",
            ResultMeta::Retry { .. } => "RETRY",
            ResultMeta::Revoked { .. } => "REVOKED",
            ResultMeta::Other { .. } => "OTHER",
        }
    }

    /// The state's name as stored (for [`ResultMeta::Other`], its own).
    pub fn status_name(&self) -> &str {
        match self {
            ResultMeta::Other { status, .. } => status,
            _ => self.status(),
        }
    }

    /// Reads what Celery's Redis backend stored at [`result_key`]: the state and, for
    /// SUCCESS, the value; for FAILURE, RETRY and REVOKED, the exception's class and
    /// text (`exc_message` is a list of the exception's arguments, joined).
    pub fn from_json(raw: &str) -> Result<ResultMeta, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Stored {
            status: String,
            #[serde(default)]
            result: Value,
        }
        let stored: Stored = serde_json::from_str(raw)?;
        Ok(match stored.status.as_str() {
            "SUCCESS" => ResultMeta::Success(stored.result),
            "FAILURE" => {
                let (kind, message) = exception_of(&stored.result);
                ResultMeta::Failure { kind, message }
            }
            "RETRY" => ResultMeta::Retry { message: exception_of(&stored.result).1 },
            "REVOKED" => ResultMeta::Revoked { reason: exception_of(&stored.result).1 },
            "STARTED" => ResultMeta::Started,
            _ => ResultMeta::Other { status: stored.status, result: stored.result },
        })
    }

    /// The stored JSON for task `id`, done at `date_done` (ISO 8601, for the final
    /// states), in the fields and shapes Celery 5 writes: an error as
    /// `{"exc_type", "exc_message": [..], "exc_module": null}`, which Celery turns back
    /// into an exception class of that name.
    pub fn to_json(&self, id: &str, date_done: Option<&str>) -> String {
        let error = |kind: &str, message: &str| json_error(kind, message);
        let (result, traceback) = match self {
            ResultMeta::Success(value) => (value.clone(), Value::Null),
            ResultMeta::Failure { kind, message } => (error(kind, message), Value::String(message.clone())),
            ResultMeta::Started => (Value::Null, Value::Null),
            ResultMeta::Retry { message } => (error("Retry", message), Value::String(message.clone())),
            ResultMeta::Revoked { reason } => (revoked(reason), Value::Null),
            ResultMeta::Other { result, .. } => (result.clone(), Value::Null),
        };
        let ready = matches!(self, ResultMeta::Success(_) | ResultMeta::Failure { .. } | ResultMeta::Revoked { .. });
        let mut meta = Map::new();
        meta.insert("status".into(), Value::String(self.status_name().into()));
        meta.insert("result".into(), result);
        meta.insert("traceback".into(), traceback);
        meta.insert("children".into(), Value::Array(Vec::new()));
        meta.insert("date_done".into(), date_done.filter(|_| ready).map_or(Value::Null, |d| Value::String(d.into())));
        meta.insert("task_id".into(), Value::String(id.into()));
        Value::Object(meta).to_string()
    }
}

/// Celery's own `TaskRevokedError` (its module named: Python raises the real class).
fn revoked(reason: &str) -> Value {
    let mut exc = Map::new();
    exc.insert("exc_type".into(), Value::String("TaskRevokedError".into()));
    exc.insert("exc_message".into(), Value::Array(vec![Value::String(reason.into())]));
    exc.insert("exc_module".into(), Value::String("celery.exceptions".into()));
    Value::Object(exc)
}

fn json_error(kind: &str, message: &str) -> Value {
    let mut exc = Map::new();
    exc.insert("exc_type".into(), Value::String(kind.into()));
    exc.insert("exc_message".into(), Value::Array(vec![Value::String(message.into())]));
    exc.insert("exc_module".into(), module_of(kind));
    Value::Object(exc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_metas_have_celerys_fields_and_shapes() {
        let at = Some("2026-12-01T17:45:00.123456+00:00");
        let meta = |m: ResultMeta| serde_json::from_str::<Value>(&m.to_json("id-1", at)).unwrap();
        let ok = meta(ResultMeta::Success(json!(5)));
        assert_eq!(
            ok,
            json!({"status": "SUCCESS", "result": 5, "traceback": null, "children": [],
                              "date_done": at, "task_id": "id-1"})
        );
        let failed = meta(ResultMeta::Failure { kind: "TaskError".into(), message: "division by zero".into() });
        assert_eq!(
            failed["result"],
            json!({"exc_type": "TaskError", "exc_message": ["division by zero"], "exc_module": null})
        );
        assert_eq!(failed["status"], "FAILURE");
        assert_eq!(meta(ResultMeta::Started)["date_done"], Value::Null, "not done");
        assert_eq!(meta(ResultMeta::Revoked { reason: "revoked".into() })["status"], "REVOKED");
        assert_eq!(result_key("id-1"), "celery-task-meta-id-1");
    }

    #[test]
    fn stored_metas_read_back_into_their_states() {
        let back =
            |m: ResultMeta| ResultMeta::from_json(&m.to_json("id-1", Some("2026-12-01T17:45:00+00:00"))).unwrap();
        for m in [
            ResultMeta::Success(json!({"pages": [1, 2]})),
            ResultMeta::Failure { kind: "ZeroDivisionError".into(), message: "division by zero".into() },
            ResultMeta::Started,
            ResultMeta::Retry { message: "later".into() },
            ResultMeta::Revoked { reason: "revoked".into() },
            ResultMeta::Other { status: "PROGRESS".into(), result: json!({"done": 3}) },
        ] {
            assert_eq!(back(m.clone()), m);
        }
        // What Python's Celery 5.7 stores for `raise ValueError("bad", 3)`.
        let raw = r#"{"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["bad", 3], "exc_module": "builtins"}, "traceback": "Traceback ...", "children": [], "date_done": "2026-12-01T17:45:00.1+00:00", "task_id": "x"}"#;
        assert_eq!(
            ResultMeta::from_json(raw).unwrap(),
            ResultMeta::Failure { kind: "ValueError".into(), message: "bad, 3".into() }
        );
        assert!(ResultMeta::from_json("not json").is_err());
    }

    #[test]
    fn a_rust_error_may_name_a_python_builtin_exception() {
        assert_eq!(python_exception("ValueError: pages must be positive"), ("ValueError", "pages must be positive"));
        assert_eq!(python_exception("division by zero"), ("TaskError", "division by zero"));
        assert_eq!(python_exception("Note: not an exception"), ("TaskError", "Note: not an exception"));
        let stored = |kind: &str| {
            let m = ResultMeta::Failure { kind: kind.into(), message: "x".into() };
            serde_json::from_str::<Value>(&m.to_json("id", None)).unwrap()["result"]["exc_module"].clone()
        };
        assert_eq!(
            (stored("ValueError"), stored("TaskError"), stored("ChordError")),
            (json!("builtins"), Value::Null, json!("celery.exceptions"))
        );
    }
}
