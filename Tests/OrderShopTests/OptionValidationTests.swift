import Foundation
import TestSupport
import Testing

/// Options that cannot work are refused before anything starts, naming the option: a port past
/// 65535 (the socket layer truncated it to 16 bits: `--port 70000` listened on 4464), a
/// concurrency whose slots do not fit in memory, a negative `--maxlen`, a dead-letter id that is
/// not a stream id. Each case ran (and misbehaved) before these checks.
@Suite struct OptionValidationTests {
    @Test(arguments: [
        (["serve", "customer", "--port", "70000"], "--port 70000 is not a port"),
        (["serve", "customer", "--port=-1"], "--port -1 is not a port"),
        (["up", "--gateway-port", "65536"], "--gateway-port 65536 is not a port"),
        (["up", "--service-port-base", "65533"], "past 65535"),
        (["up", "--redis-port", "0"], "--redis-port 0 is not a port"),
        // The cluster needs 2 × nodes ports from --redis-port (nodes, then bus ports).
        (["up", "--cluster", "--redis-port", "65530"], "--redis-port 65530: --cluster needs 12 ports from it"),
        (["up", "--cluster", "--cluster-replicas", "0", "--redis-port", "65531"], "--redis-port 65531: --cluster needs 6 ports from it"),
        (["up", "--cluster-replicas", "0"], "--cluster-replicas is for the cluster --cluster starts"),
        // Checked in run before, with the top-level usage ("ordershop <subcommand>") after it.
        (["work", "crm", "--confirm-timeout", "0"], "--confirm-timeout must be more than 0 ms"),
        (["serve", "customer", "--confirm-replicas=-1"], "--confirm-replicas must be 0 or more"),
        (["up", "--cluster", "--cluster-replicas", "3"], "--cluster-replicas 3: 0, 1 or 2"),
        (["bench", "gateway", "--cluster-replicas", "0"], "--cluster-replicas is for --cluster"),
        (["work", "crm", "--metrics-port", "100000"], "--metrics-port 100000 is not a port"),
        (["serve", "customer", "--partitions", "0"], "--partitions must be 1 to 128, not 0"),
        (["up", "--partitions", "129"], "--partitions must be 1 to 128, not 129"),
        (["work", "crm", "--concurrency", "1000000000"], "--concurrency must be 1-10000"),
        (["work", "crm", "--prefetch", "0"], "--prefetch must be 1-1000000"),
        // An unset variable (`--consumer "$POD_NAME"`) named every pod ""; a newline went raw into the log.
        (["work", "crm", "--consumer", ""], "--consumer must not be empty or blank"),
        (["work", "crm", "--consumer", " "], "--consumer must not be empty or blank"),
        (["work", "crm", "--consumer", "a\nb"], "--consumer must not contain control"),
        // Invisible or line-breaking: a zero-width space alone, a line separator, a right-to-left override.
        (["work", "crm", "--consumer", "\u{200B}"], "--consumer must not be empty or blank"),
        (["work", "crm", "--consumer", "a\u{2028}b"], "--consumer must not contain control"),
        (["work", "crm", "--consumer", "a\u{202E}b"], "--consumer must not contain control"),
        (["dashboard", "--port", "99999"], "--port 99999 is not a port"),
        (["otlp-sink", "--port", "70000"], "--port 70000 is not a port"),
        (["trim", "--maxlen=-1"], "--maxlen must not be negative"),
        (["trim", "--without-worker", "mailer"], "--without-worker: unknown worker 'mailer'; one of crm, billing"),
        (["dlq", "purge", "s", "g", "--id", "x"], "--id: not dead-letter ids"),
        // A negative number written as its own argument reaches the check (the parser took it
        // for an option: "Missing value for '--interval <interval>'").
        (["status", "--interval", "-1"], "--interval must be above 0"),
        (["status", "--watch", "--json"], "--watch draws a screen; --json prints once"),
        (["work", "crm", "--lease-seconds", "-1"], "--lease-seconds must be at least 1"),
        (["work", "crm", "--readers", "-1"], "--readers must be 1-64"),
        (["serve", "customer", "--port", "-1"], "--port -1 is not a port"),
        (["up", "--redis-port", "-1"], "--redis-port -1 is not a port"),
        (["dashboard", "--sample-interval", "-1"], "--sample-interval must be above 0"),
        (["trim", "--maxlen", "-1"], "--maxlen must not be negative"),
        (["demo", "--mail-timeout", "-1"], "--mail-timeout must be at least 1"),
        (["serve", "customer", "--confirm-replicas", "-1"], "--confirm-replicas must be 0 or more, not -1"),
        (["work", "crm", "--confirm-timeout", "-5"], "--confirm-timeout must be more than 0 ms"),
        // These had no check: written `--count=-1`, -1 was accepted.
        (["dlq", "list", "s", "g", "--count", "-1"], "--count must be at least 1"),
        (["dlq", "list", "s", "g", "--partition", "-1"], "--partition must not be negative"),
        (["dlq", "list", "", "crm"], "STREAM must not be empty"),
        (["dlq", "purge", "s", ""], "GROUP must not be empty"),
        // Taken before, and every call failed as "unavailable": the worker held its entries.
        (["work", "crm", "--msg-url", "notaurl"], "--msg-url \"notaurl\" is not"),
        (["work", "billing", "--msg-url", "127.0.0.1:5006"], "--msg-url \"127.0.0.1:5006\" is not"),
        (["serve", "gateway", "--customer-url", "ftp://x"], "--customer-url \"ftp://x\" is not an http(s) URL"),
        (["serve", "gateway", "--order-url", "http://"], "--order-url \"http://\" has no host"),
    ])
    func refusedBeforeStarting(arguments: [String], message: String) async throws {
        let ordershop = try builtProduct("ordershop")
        // An address nothing answers on: a command that got past its checks would fail on it
        // (or, for a server, start), not print the refusal.
        let result = try await runChild(ordershop, arguments, environment: ["REDIS_URL": "redis://127.0.0.1:1"], timeout: .seconds(30))
        #expect(result.status == 64, "\(arguments): \(result.output)")
        #expect(result.output.contains(message), "\(arguments): \(result.output)")
        // With its own command's usage, not the top level's.
        #expect(!result.output.contains("ordershop <subcommand>"), "\(arguments): \(result.output)")
    }
}
