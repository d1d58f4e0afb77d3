// A Swift 6.3.1 miscompile at -O (Linux x86_64), kept as evidence for the workaround in
// `OperationsReader.NodeRead` and `RedisClusterClient.sendToAllPrimaries`. Build and run:
//   mkdir -p /tmp/r/Sources/r && cp scripts/taskgroup-tuple-repro.swift /tmp/r/Sources/r/main.swift
//   printf '// swift-tools-version:6.0\nimport PackageDescription\nlet package = Package(name: "r", targets: [.executableTarget(name: "r")])\n' > /tmp/r/Package.swift
//   (cd /tmp/r && swift build -c release && .build/release/r)    # crashes (bad pointer, or a garbage index)
//   (cd /tmp/r && swift build && .build/debug/r)                 # prints "bad 0"
// A child task returns a tuple from inside `do { return (x, .success(try await ...)) } catch
// { return (x, .failure(error)) }`; the group's `next()` copies a corrupted tuple. Making the
// result first (`let r: Result<...>; do { r = ... } catch { r = ... }; return (x, r)`) works.
struct Stream: Sendable { var name: String; var length: Int }
struct Failure: Error { var code: Int; var message: String }
struct Addr: Hashable, Sendable { var host: String; var port: Int }

@inline(never) func read(_ i: Int) async throws -> [Stream] {
    try? await Task.sleep(for: .milliseconds(Int.random(in: 1...5)))
    if i == 7 { throw Failure(code: 1, message: "x") }
    return [Stream(name: "s\(i)", length: i)]
}

var bad = 0
for _ in 0..<200 {
    let n = 3
    let results = await withTaskGroup(of: (Addr, Result<[Stream], any Error>).self) { group in
        for index in 0..<n {
            group.addTask {
                do { return (Addr(host: "h", port: index), .success(try await read(index))) } catch { return (Addr(host: "h", port: index), .failure(error)) }
            }
        }
        var out: [Addr: Result<[Stream], any Error>] = [:]
        for await item in group { out[item.0] = item.1 }
        return out
    }
    if results.count != n || results.keys.contains(where: { $0.port < 0 || $0.port >= n }) { bad += 1 }
    for (a, r) in results { if case .success(let s) = r, s.first?.length != a.port { bad += 1 } }
}
print("bad \(bad)")
