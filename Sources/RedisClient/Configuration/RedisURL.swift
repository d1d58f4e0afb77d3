extension RedisConfiguration {
    /// Parses a Redis URL as redis-py and go-redis users write it.
    ///
    /// - `redis://[user[:password]@]host[:port][/db][?params]`
    /// - `rediss://...` for TLS (verification on)
    /// - `unix://[user[:password]@]/path/to.sock[?db=N&params]`
    ///
    /// User and password are percent-decoded. IPv6 hosts go in brackets. Known query parameters:
    /// `db`, `client_name`, `connect_timeout` and `socket_timeout` (seconds), `ssl_ca_certs`,
    /// `ssl_certfile`, `ssl_keyfile`, `ssl_server_name`, and `ssl_cert_reqs=none` (turns
    /// verification off; for tests). Redis Cluster: `addr=host:port` (repeatable: further seed
    /// nodes, the go-redis convention), `cluster=yes|no|auto`, `cluster_retry_window` (seconds). Any other parameter is an error, so a typo never goes unnoticed.
    public init(url: String) throws(RedisError) {
        func invalid(_ why: String) -> RedisError {
            // A password holding '/', '?' or '#' (base64 secrets, Azure access keys) ends the host
            // part early, and its pieces were then quoted as a port, a database or a parameter:
            // "port must be 1-65535, got '<the password>'". Such a URL is never quoted.
            if Self.mayHoldUnencodedUserinfo(url) {
                return RedisError(
                    .invalidConfiguration,
                    "invalid Redis URL (not repeated: it may hold a password): an '@' comes after a '/', '?' or '#'; if the user name or password holds one of these, percent-encode it (%2F, %3F, %23)")
            }
            return RedisError(.invalidConfiguration, "invalid Redis URL: \(why)")
        }
        guard let schemeEnd = Self.find("://", in: url) else { throw invalid("missing scheme (redis://, rediss:// or unix://)") }
        let scheme = url[..<schemeEnd].lowercased()
        var rest = Substring(url[url.index(schemeEnd, offsetBy: 3)...])
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        if let fragment = rest.firstIndex(of: "#") {
            // `redis://user:6380#x@host` would otherwise connect to host `user`: a password
            // holding '#' (``mayHoldUnencodedUserinfo(_:)`` words the error).
            if rest[fragment...].contains("@") { throw invalid("a '#' before an '@'") }
            rest = rest[..<fragment]
        }

        self.init()
        var userinfo: Substring?
        var databaseInPath = false
        switch scheme {
        case "redis", "rediss":
            let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
            var authority = rest[..<authorityEnd]
            let path = rest[authorityEnd...]
            if let at = authority.lastIndex(of: "@") {
                userinfo = authority[..<at]
                authority = authority[authority.index(after: at)...]
            }
            let (host, port) = try Self.parseHostPort(authority, invalid: invalid)
            endpoint = .tcp(host: host, port: port)
            let dbText = path.drop { $0 == "/" }
            databaseInPath = !dbText.isEmpty
            if !dbText.isEmpty {
                guard let db = Int(dbText), db >= 0 else { throw invalid("database must be a number, got '\(dbText)'") }
                database = db
            }
            tls = scheme == "rediss" ? .enable(TLSConfiguration()) : .disable
        case "unix":
            var path = rest
            if let at = rest.lastIndex(of: "@") {
                userinfo = rest[..<at]
                path = rest[rest.index(after: at)...]
            }
            guard path.first == "/" else { throw invalid("unix:// needs an absolute socket path, as in unix:///run/redis.sock") }
            endpoint = .unix(path: try Self.percentDecode(path, invalid: invalid))
        default:
            throw invalid("unknown scheme '\(scheme)' (use redis://, rediss:// or unix://)")
        }

        if let userinfo, !userinfo.isEmpty {
            let user: Substring
            let password: Substring?
            if let colon = userinfo.firstIndex(of: ":") {
                user = userinfo[..<colon]
                password = userinfo[userinfo.index(after: colon)...]
            } else {
                // A user name without a password cannot AUTH; a password alone is written
                // with an empty user name. Reject rather than guess which was meant.
                throw invalid("user name without a password; write redis://:password@host for a password only")
            }
            let decodedUser = try Self.percentDecode(user, invalid: invalid)
            authentication = Authentication(
                username: decodedUser.isEmpty ? nil : decodedUser,
                password: try Self.percentDecode(password ?? "", invalid: invalid))
        }

        var tlsSettings = TLSConfiguration()
        var tlsParameterSeen = false
        // A parameter given twice is refused rather than the last one taken: `?db=1&db=2` (or a
        // path database and a db=) would silently pick one. Only addr= repeats (one per seed).
        var seen: Set<String> = databaseInPath ? ["db"] : []
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0])
            let value = try Self.percentDecode(parts.count > 1 ? parts[1] : "", invalid: invalid)
            if key != "addr", !seen.insert(key).inserted {
                throw invalid(key == "db" && databaseInPath ? "database given twice: in the path and as db=" : "query parameter '\(key)' given twice")
            }
            switch key {
            case "db":
                guard let db = Int(value), db >= 0 else { throw invalid("db must be a number, got '\(value)'") }
                database = db
            case "client_name":
                clientName = value
            case "connect_timeout":
                timeouts.connect = try Self.seconds(value, key, invalid: invalid)
            case "socket_timeout":
                timeouts.command = try Self.seconds(value, key, invalid: invalid)
            case "ssl_ca_certs":
                tlsSettings.caFile = value; tlsParameterSeen = true
            case "ssl_certfile":
                tlsSettings.certificateFile = value; tlsParameterSeen = true
            case "ssl_keyfile":
                tlsSettings.keyFile = value; tlsParameterSeen = true
            case "ssl_server_name":
                tlsSettings.serverName = value; tlsParameterSeen = true
            case "ssl_cert_reqs":
                switch value.lowercased() {
                case "none": tlsSettings.verifyPeer = false
                case "required": tlsSettings.verifyPeer = true
                default: throw invalid("ssl_cert_reqs must be 'none' or 'required', got '\(value)'")
                }
                tlsParameterSeen = true
            case "addr":
                guard !endpoint.isUnix else { throw invalid("addr= (further cluster seeds) needs a redis:// or rediss:// URL") }
                let (host, port) = try Self.parseHostPort(Substring(value), invalid: invalid)
                seeds.append(.tcp(host: host, port: port))
            case "cluster":
                switch value.lowercased() {
                case "yes", "true", "1": clusterMode = .enabled
                case "no", "false", "0": clusterMode = .disabled
                case "auto": clusterMode = .auto
                default: throw invalid("cluster must be 'yes', 'no' or 'auto', got '\(value)'")
                }
            case "cluster_retry_window":
                clusterRetryWindow = try Self.seconds(value, key, invalid: invalid)
            default:
                throw invalid("unknown query parameter '\(key)'")
            }
        }
        // Seeds are asked only to find a cluster: with cluster=no they were dropped without a
        // word (a trial took them for a replica to fall back to).
        if clusterMode == .disabled && !seeds.isEmpty {
            throw invalid("addr= names further Redis Cluster seeds, and cluster=no says this is not a cluster; for one server give its URL alone")
        }
        if tlsParameterSeen {
            guard tls.isEnabled else { throw invalid("TLS parameters given for a plain-text URL; use rediss://") }
            tls = .enable(tlsSettings)
        }
    }

    /// Reads `REDIS_URL` (default `redis://127.0.0.1:6379`) and the TLS variables
    /// `REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE`, `REDIS_TLS_KEY_FILE`, `REDIS_TLS_SERVER_NAME`.
    /// An explicit `url` wins over `REDIS_URL`. TLS variables with a plain-text URL are an error,
    /// never a silent fall-back to plain text.
    public static func fromEnvironment(_ environment: [String: String], url: String? = nil) throws(RedisError) -> RedisConfiguration {
        var config = try RedisConfiguration(url: url ?? environment["REDIS_URL"] ?? "redis://127.0.0.1:6379")
        let tlsVariables = ["REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE", "REDIS_TLS_SERVER_NAME"]
            .filter { environment[$0].map { !$0.isEmpty } ?? false }
        guard !tlsVariables.isEmpty else { return config }
        guard case .enable(var settings) = config.tls else {
            throw RedisError(
                .invalidConfiguration,
                "\(tlsVariables.joined(separator: ", ")) set but the Redis URL is not rediss://")
        }
        if let v = environment["REDIS_TLS_CA_FILE"], !v.isEmpty { settings.caFile = v }
        if let v = environment["REDIS_TLS_CERT_FILE"], !v.isEmpty { settings.certificateFile = v }
        if let v = environment["REDIS_TLS_KEY_FILE"], !v.isEmpty { settings.keyFile = v }
        if let v = environment["REDIS_TLS_SERVER_NAME"], !v.isEmpty { settings.serverName = v }
        config.tls = .enable(settings)
        return config
    }

    private static func parseHostPort(
        _ authority: Substring, invalid: (String) -> RedisError
    ) throws(RedisError) -> (String, Int) {
        var host: Substring
        var portText: Substring?
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { throw invalid("unclosed '[' in IPv6 host") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw invalid("unexpected text after IPv6 host") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw invalid("missing host") }
        var port = 6379
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { throw invalid("port must be 1-65535, got '\(portText)'") }
            port = p
        }
        return (String(host), port)
    }

    /// Whether an '@' follows the first '/', '?' or '#' after the scheme: the user name or
    /// password may hold one of them unencoded (or a parameter holds an '@').
    static func mayHoldUnencodedUserinfo(_ url: String) -> Bool {
        guard let schemeEnd = find("://", in: url) else { return false }
        let rest = url[url.index(schemeEnd, offsetBy: 3)...]
        guard let delimiter = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) else { return false }
        return rest[delimiter...].contains("@")
    }

    /// The index where `needle` first starts in `text` (no Foundation needed).
    private static func find(_ needle: String, in text: String) -> String.Index? {
        var index = text.startIndex
        while index < text.endIndex {
            if text[index...].hasPrefix(needle) { return index }
            index = text.index(after: index)
        }
        return nil
    }

    private static func seconds(_ value: String, _ key: String, invalid: (String) -> RedisError) throws(RedisError) -> Duration {
        guard let s = Double(value), s > 0 else { throw invalid("\(key) must be a positive number of seconds, got '\(value)'") }
        return .nanoseconds(Int64(s * 1e9))
    }

    static func percentDecode(_ text: Substring, invalid: (String) -> RedisError) throws(RedisError) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes = [UInt8]()
        var utf8 = text.utf8.makeIterator()
        while let b = utf8.next() {
            if b == UInt8(ascii: "%") {
                guard let h = utf8.next(), let l = utf8.next(), let hi = hexValue(h), let lo = hexValue(l) else {
                    throw invalid("bad percent-encoding")
                }
                bytes.append(hi << 4 | lo)
            } else {
                bytes.append(b)
            }
        }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw invalid("percent-encoding is not UTF-8") }
        return s
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
