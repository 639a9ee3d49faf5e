//! The options of `#[task(..)]`, each declared once, in the table below.
//!
//! A row gives the `TaskArgs` field that holds the option and its type, the key, the
//! kind of value it takes (which reads and checks the literal, and writes it out as an
//! expression) and what it sets in the generated code. The `TaskArgs` struct, the
//! parse with its duplicate and unknown-key errors (which list the keys in table order)
//! and the `TaskOptions` initialiser that `expand` writes all come from the rows, so a
//! new option is one row here plus what it does at run time in task-core. Checks that
//! involve two options (a soft limit below the hard one) follow the table.

mod kind;
mod table;

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{LitBool, LitInt, LitStr, Meta, Token};

use kind::{flag, int, path, rate, secs, string};
use table::{Sets, options};

options! {
    /// The registered name (else the `module_path!()` of the task's module), written as `NAME`.
    name: LitStr = "name", string() => Sets::Macro,
    /// The default queue.
    queue: LitStr = "queue", string() => Sets::Method("queue"),
    /// The default priority, higher first.
    priority: LitInt = "priority", int::<u8>("a priority from 0 to 9, like `priority = 7`").at_most(9)
        => Sets::Method("priority"),
    /// Retries after a retryable error.
    max_retries: LitInt = "max_retries", int::<u32>("a number of retries, like `max_retries = 5`")
        => Sets::Method("max_retries"),
    /// The first retry's delay ceiling in seconds, doubling with each retry.
    retry_backoff: LitInt = "retry_backoff", secs(30) => Sets::Field("backoff", "Backoff", "base"),
    /// The largest retry delay in seconds.
    retry_backoff_max: LitInt = "retry_backoff_max", secs(30) => Sets::Field("backoff", "Backoff", "max"),
    /// Full jitter on retry delays.
    retry_jitter: LitBool = "retry_jitter", flag() => Sets::Field("backoff", "Backoff", "jitter"),
    /// Hard time limit in seconds.
    time_limit: LitInt = "time_limit", secs(30) => Sets::Method("time_limit"),
    /// Soft time limit in seconds, below `time_limit`.
    soft_time_limit: LitInt = "soft_time_limit", secs(30) => Sets::Method("soft_time_limit"),
    /// Seconds after sending past which a task not started is revoked.
    expires: LitInt = "expires", secs(30) => Sets::Method("expires"),
    /// The rate: (count, seconds per period), checked at compile time.
    rate_limit: (u32, u64) = "rate_limit", rate() => Sets::Method("rate_limit"),
    /// Seconds during which a call with the same arguments is not sent again.
    unique_for: LitInt = "unique_for", secs(30) => Sets::Method("unique_for"),
    /// Keep no state or result once the task ends.
    ignore_result: LitBool = "ignore_result", flag() => Sets::Method("ignore_result"),
    /// Acknowledge before running (at most once).
    acks_early: LitBool = "acks_early", flag() => Sets::Method("acks_early"),
    /// Store `STARTED` when the task starts.
    track_started: LitBool = "track_started", flag() => Sets::Method("track_started"),
    /// Seconds the result is kept.
    result_ttl: LitInt = "result_ttl", secs(3600) => Sets::Method("result_ttl"),
    /// The path of task-core in the generated code (else `::task_core`).
    krate: syn::Path = "crate", path() => Sets::Macro,
}

impl TaskArgs {
    /// Parses every option, collecting every error (one per mistake).
    pub(crate) fn parse(tokens: TokenStream) -> (Self, Option<syn::Error>) {
        let mut args = TaskArgs::default();
        let mut errors = Errors::default();
        let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
            Ok(metas) => metas,
            Err(e) => return (args, Some(e)),
        };
        let known = || KEYS.join(", ");
        for meta in metas {
            let Meta::NameValue(nv) = &meta else {
                let message = format!("expected `option = value`; options are: {}", known());
                errors.push(syn::Error::new(meta.span(), message));
                continue;
            };
            let key = nv.path.get_ident().map(ToString::to_string).unwrap_or_default();
            let result = args.read(&key, nv).unwrap_or_else(|| {
                let path = quote::ToTokens::to_token_stream(&nv.path).to_string().replace(' ', "");
                Err(syn::Error::new(nv.path.span(), format!("unknown option `{path}`; options are: {}", known())))
            });
            if let Err(e) = result {
                errors.push(e);
            }
        }
        args.check_pairs(&mut errors);
        (args, errors.0)
    }

    /// The checks that involve two options, once each has been read.
    fn check_pairs(&self, errors: &mut Errors) {
        if let (Some(soft), Some(hard)) = (&self.soft_time_limit, &self.time_limit)
            && soft.base10_parse::<u64>().ok() >= hard.base10_parse::<u64>().ok()
        {
            errors.push(syn::Error::new(soft.span(), "`soft_time_limit` must be below `time_limit`"));
        }
        if let (Some(base), Some(max)) = (&self.retry_backoff, &self.retry_backoff_max)
            && base.base10_parse::<u64>().ok() > max.base10_parse::<u64>().ok()
        {
            errors.push(syn::Error::new(max.span(), "`retry_backoff_max` must be at least `retry_backoff`"));
        }
    }
}

/// Collects errors (serde's `Ctxt` habit).
#[derive(Default)]
pub(crate) struct Errors(pub(crate) Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors(tokens: TokenStream) -> Vec<String> {
        TaskArgs::parse(tokens).1.map(|e| e.into_iter().map(|e| e.to_string()).collect()).unwrap_or_default()
    }

    #[test]
    fn all_options() {
        let (args, err) = TaskArgs::parse(quote!(
            name = "a.b",
            queue = "q",
            max_retries = 5,
            time_limit = 30,
            crate = ::x::task_core
        ));
        assert!(err.is_none());
        assert_eq!(args.name.unwrap().value(), "a.b");
        assert_eq!(args.max_retries.unwrap().base10_parse::<u32>().unwrap(), 5);
        assert!(args.krate.is_some());
    }

    #[test]
    fn every_mistake_is_reported_once() {
        let errs = errors(quote!(queue = "a", queue = "b", retries = 3, max_retries = "5", time_limit = 0, name = ""));
        assert_eq!(
            errs,
            [
                "`queue` specified more than once",
                "unknown option `retries`; options are: name, queue, priority, max_retries, retry_backoff, retry_backoff_max, retry_jitter, time_limit, soft_time_limit, expires, rate_limit, unique_for, ignore_result, acks_early, track_started, result_ttl, crate",
                "`max_retries` takes a number of retries, like `max_retries = 5`",
                "`time_limit` must be at least 1",
                "`name` cannot be empty",
            ]
        );
    }

    #[test]
    fn control_options_are_checked() {
        let (args, err) = TaskArgs::parse(quote!(
            rate_limit = "20/s",
            priority = 9,
            soft_time_limit = 5,
            time_limit = 10,
            ignore_result = true
        ));
        assert!(err.is_none());
        assert_eq!(args.rate_limit, Some((20, 1)));
        let errs = errors(quote!(
            rate_limit = "20/fortnight",
            priority = 10,
            acks_early = 1,
            soft_time_limit = 10,
            time_limit = 10
        ));
        assert_eq!(
            errs,
            [
                "`rate_limit` is written N/s, N/m or N/h, with N above 0, like `rate_limit = \"100/s\"`",
                "`priority` must be at most 9",
                "`acks_early` takes `true` or `false`",
                "`soft_time_limit` must be below `time_limit`",
            ]
        );
    }

    fn initialiser(tokens: TokenStream) -> String {
        let (args, err) = TaskArgs::parse(tokens);
        assert!(err.is_none(), "{err:?}");
        args.task_options(&quote!(::task_core)).to_string()
    }

    #[test]
    fn initialiser_has_one_call_per_option_in_table_order() {
        assert_eq!(initialiser(quote!(name = "a.b", crate = ::task_core)), ":: task_core :: TaskOptions :: new ()");
        assert_eq!(
            initialiser(quote!(time_limit = 9, queue = "q", rate_limit = "30/m", acks_early = true)),
            ":: task_core :: TaskOptions :: new () . queue (\"q\") \
             . time_limit (:: core :: time :: Duration :: from_secs (9)) \
             . rate_limit (:: task_core :: RateLimit :: new (30u32 , :: core :: time :: Duration :: from_secs (60u64))) \
             . acks_early (true)"
        );
    }

    #[test]
    fn backoff_options_make_one_call_with_defaults_for_the_rest() {
        assert_eq!(
            initialiser(quote!(retry_jitter = false, max_retries = 2)),
            ":: task_core :: TaskOptions :: new () . max_retries (2) \
             . backoff (:: task_core :: Backoff { base : :: task_core :: Backoff :: DEFAULT . base , \
             max : :: task_core :: Backoff :: DEFAULT . max , jitter : false })"
        );
        let errs = errors(quote!(retry_backoff = 10, retry_backoff_max = 5));
        assert_eq!(errs, ["`retry_backoff_max` must be at least `retry_backoff`"]);
    }

    #[test]
    fn out_of_range() {
        let errs = errors(quote!(max_retries = 99999999999));
        assert!(errs[0].starts_with("`max_retries` is out of range"), "{errs:?}");
    }
}
