import Hummingbird

/// The worker endpoint's two paths serve `GET` and `HEAD` alone: any other method is answered
/// 405 with `Allow: GET, HEAD`, as the services answer. A `POST /healthz` was 404 "not found",
/// which reads as a wrong path.
struct ReadOnlyRoutes<Context: RequestContext>: RouterMiddleware {
    let paths: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard paths.contains(request.uri.path), request.method != .get, request.method != .head else { return try await next(request, context) }
        return Response(
            status: .methodNotAllowed, headers: [.allow: "GET, HEAD", .contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: #"{"error":"\#(request.method) is not allowed here; allowed: GET, HEAD"}"#)))
    }
}
