import RedisClient
import Testing

/// Redis URLs as users write them (redis-py / go-redis conventions), good and bad.
@Suite struct URLTests {
    struct Good: Sendable, CustomTestStringConvertible {
        var url: String
        var endpoint: RedisConfiguration.Endpoint
        var username: String? = nil
        var password: String? = nil
        var database = 0
        var tls: RedisConfiguration.TLS = .disable
        var clientName: String? = nil
        var testDescription: String { url }
    }

    static let good: [Good] = [
        Good(url: "redis://localhost", endpoint: .tcp(host: "localhost", port: 6379)),
        Good(url: "redis://127.0.0.1:6380", endpoint: .tcp(host: "127.0.0.1", port: 6380)),
        Good(url: "redis://cache.internal:6379/4", endpoint: .tcp(host: "cache.internal", port: 6379), database: 4),
        Good(url: "redis://:p%40ss@host/1", endpoint: .tcp(host: "host", port: 6379), password: "p@ss", database: 1),
        Good(
            url: "redis://billing:p%40ss%3Aw%2Frd@host:7000", endpoint: .tcp(host: "host", port: 7000), username: "billing",
            password: "p@ss:w/rd"),
        Good(url: "redis://us%65r:pw@h", endpoint: .tcp(host: "h", port: 6379), username: "user", password: "pw"),
        Good(url: "redis://[::1]:6380", endpoint: .tcp(host: "::1", port: 6380)),
        Good(url: "redis://[::1]", endpoint: .tcp(host: "::1", port: 6379)),
        Good(url: "redis://h/2?client_name=crm-worker", endpoint: .tcp(host: "h", port: 6379), database: 2, clientName: "crm-worker"),
        Good(url: "REDIS://h:1", endpoint: .tcp(host: "h", port: 1)),
        Good(url: "rediss://redis.example.com:6380", endpoint: .tcp(host: "redis.example.com", port: 6380), tls: .enable(.init())),
        Good(
            url: "rediss://:pw@redis.example.com/3?ssl_ca_certs=/etc/ssl/ca.pem&ssl_server_name=cache.example",
            endpoint: .tcp(host: "redis.example.com", port: 6379), password: "pw", database: 3,
            tls: .enable(.init(caFile: "/etc/ssl/ca.pem", serverName: "cache.example"))),
        Good(
            url: "rediss://h?ssl_certfile=/c.pem&ssl_keyfile=/k.pem&ssl_ca_certs=/ca%20dir/ca.pem",
            endpoint: .tcp(host: "h", port: 6379),
            tls: .enable(.init(caFile: "/ca dir/ca.pem", certificateFile: "/c.pem", keyFile: "/k.pem"))),
        Good(url: "rediss://h?ssl_cert_reqs=none", endpoint: .tcp(host: "h", port: 6379), tls: .enable(.init(verifyPeer: false))),
        Good(url: "unix:///tmp/x.sock?db=2", endpoint: .unix(path: "/tmp/x.sock"), database: 2),
        Good(url: "unix://:secret@/run/redis/redis.sock", endpoint: .unix(path: "/run/redis/redis.sock"), password: "secret"),
    ]

    @Test(arguments: good)
    func parses(_ expected: Good) throws {
        let config = try RedisConfiguration(url: expected.url)
        #expect(config.endpoint == expected.endpoint)
        #expect(config.authentication?.username == expected.username)
        #expect(config.authentication?.password == expected.password)
        #expect(config.database == expected.database)
        #expect(config.tls == expected.tls)
        #expect(config.clientName == expected.clientName)
    }

    @Test func timeoutsFromQuery() throws {
        let config = try RedisConfiguration(url: "redis://h?connect_timeout=1.5&socket_timeout=0.25")
        #expect(config.timeouts.connect == .milliseconds(1500))
        #expect(config.timeouts.command == .milliseconds(250))
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var url: String
        /// A word the error message must contain, so that the user learns what is wrong.
        var reason: String
        var testDescription: String { url }
    }

    static let bad: [Bad] = [
        Bad(url: "localhost:6379", reason: "scheme"),
        Bad(url: "http://localhost", reason: "scheme"),
        Bad(url: "redis://", reason: "missing host"),
        Bad(url: "redis://:6379", reason: "missing host"),
        Bad(url: "redis://:pw@/0", reason: "missing host"),
        Bad(url: "redis://h:0", reason: "port"),
        Bad(url: "redis://h:65536", reason: "port"),
        Bad(url: "redis://h:abc", reason: "port"),
        Bad(url: "redis://h:", reason: "port"),
        Bad(url: "redis://[::1", reason: "IPv6"),
        Bad(url: "redis://[::1]x", reason: "IPv6"),
        Bad(url: "redis://h/zero", reason: "database"),
        Bad(url: "redis://h?db=-1", reason: "db"),
        Bad(url: "redis://h?sslcacerts=/x", reason: "unknown query parameter 'sslcacerts'"),
        Bad(url: "redis://h?ssl_ca_certs=/ca.pem", reason: "rediss://"),
        Bad(url: "redis://h?ssl_cert_reqs=none", reason: "rediss://"),
        Bad(url: "rediss://h?ssl_cert_reqs=maybe", reason: "ssl_cert_reqs"),
        Bad(url: "redis://h?connect_timeout=soon", reason: "connect_timeout"),
        Bad(url: "redis://user@h", reason: "password"),
        Bad(url: "redis://:p%4@h", reason: "percent-encoding"),
        Bad(url: "redis://:p%ZZ@h", reason: "percent-encoding"),
        Bad(url: "unix://relative.sock", reason: "absolute"),
        // A parameter given twice would silently take one of them.
        Bad(url: "redis://h?db=1&db=2", reason: "query parameter 'db' given twice"),
        Bad(url: "redis://h/1?db=2", reason: "database given twice"),
        Bad(url: "unix:///tmp/x.sock?db=1&db=1", reason: "query parameter 'db' given twice"),
        Bad(url: "rediss://h?ssl_ca_certs=/a.pem&ssl_ca_certs=/b.pem", reason: "query parameter 'ssl_ca_certs' given twice"),
    ]

    @Test(arguments: bad)
    func rejects(_ bad: Bad) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: bad.url) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains(bad.reason) == true, "\(error?.message ?? "no error")")
    }

    // Base64 secrets and Azure access keys hold '/' (and '?', '#' can occur): unencoded, they
    // ended the host part, and the error quoted a piece of the password as a port, a database
    // or a parameter (found by a user-style pass: "port must be 1-65535, got '<password>'").
    @Test(
        "a password holding an unencoded '/', '?' or '#' is refused without quoting any of the URL",
        arguments: [
            "rediss://app:Kq7rT2xY9pLmN3vW8/zz@localhost:6380", "rediss://app:Kq7rT2xY/9pLmN3vW8@localhost",
            "redis://app:Kq7rT2xY?9pLmN3vW8@localhost", "redis://app:Kq7rT2xY#9pLmN3vW8@localhost", "redis://:1234/9pLmN3vW8@localhost",
            "redis://app:6379?db=9pLmN3vW8@localhost", "redis://app:6380#9pLmN3vW8@localhost",
        ])
    func unencodedPasswordIsNotQuoted(_ url: String) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
        #expect(error?.code == .invalidConfiguration)
        let message = error?.message ?? ""
        #expect(message.contains("percent-encode"), "\(message)")
        for secret in ["Kq7rT2xY", "9pLmN3vW8", "localhost"] { #expect(!message.contains(secret), "\(message)") }
    }

    @Test func environment() throws {
        let plain = try RedisConfiguration.fromEnvironment(["REDIS_URL": "redis://cache:6390/1"])
        #expect(plain.endpoint == .tcp(host: "cache", port: 6390))
        #expect(plain.database == 1)
        #expect(plain.tls == .disable)

        let defaulted = try RedisConfiguration.fromEnvironment([:])
        #expect(defaulted.endpoint == .tcp(host: "127.0.0.1", port: 6379))

        let tls = try RedisConfiguration.fromEnvironment([
            "REDIS_URL": "rediss://cache:6390",
            "REDIS_TLS_CA_FILE": "/ca.pem",
            "REDIS_TLS_CERT_FILE": "/client.pem",
            "REDIS_TLS_KEY_FILE": "/client.key",
            "REDIS_TLS_SERVER_NAME": "cache.example",
        ])
        #expect(
            tls.tls == .enable(.init(caFile: "/ca.pem", certificateFile: "/client.pem", keyFile: "/client.key", serverName: "cache.example")))

        // An explicit URL wins over REDIS_URL.
        let explicit = try RedisConfiguration.fromEnvironment(["REDIS_URL": "redis://ignored"], url: "redis://chosen:1")
        #expect(explicit.endpoint == .tcp(host: "chosen", port: 1))

        // TLS variables with a plain URL: an error, never a silent plain-text connection.
        for variable in ["REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE", "REDIS_TLS_SERVER_NAME"] {
            let error = #expect(throws: RedisError.self) {
                try RedisConfiguration.fromEnvironment(["REDIS_URL": "redis://cache:6390", variable: "/x"])
            }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains(variable) == true)
        }
        // Empty variables count as unset.
        #expect(throws: Never.self) { try RedisConfiguration.fromEnvironment(["REDIS_URL": "redis://h", "REDIS_TLS_CA_FILE": ""]) }
    }

    @Test(arguments: [
        "redis://:p%40ss@host:6379/2",
        "redis://billing:p%40ss@host",
        "rediss://billing:p%40ss@[::1]:6380/1?ssl_ca_certs=/ca.pem",
        "unix://billing:p%40ss@/run/redis.sock?db=3",
    ])
    func redactedDescriptionHidesThePassword(_ url: String) throws {
        let config = try RedisConfiguration(url: url)
        let text = config.redactedDescription
        #expect(!text.contains("p@ss"))
        #expect(!text.contains("p%40ss"))
        #expect(text.contains("***"))
        #expect(!"\(config.authentication!)".contains("p@ss"))
        // The rest is still there to help an operator.
        switch config.endpoint {
        case .tcp(let host, _): #expect(text.contains(host))
        case .unix(let path): #expect(text.contains(path))
        }
    }
}
