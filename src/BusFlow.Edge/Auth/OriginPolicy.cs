using Microsoft.AspNetCore.Http;

namespace BusFlow.Edge.Auth;

/// <summary>
/// Which browser pages may open WebSockets and event streams: the edge's own origin, the
/// configured allow-list, or any with <c>*</c>. Requests without an Origin (services) pass.
/// </summary>
internal static class OriginPolicy
{
    public static bool Allows(HttpRequest request, IReadOnlyCollection<string> allowed)
    {
        var origin = request.Headers.Origin.ToString();
        if (string.IsNullOrEmpty(origin))
        {
            return true;
        }

        if (Uri.TryCreate(origin, UriKind.Absolute, out var uri)
            && string.Equals(uri.Authority, request.Host.Value, StringComparison.OrdinalIgnoreCase)
            && string.Equals(uri.Scheme, request.Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        return allowed.Any(a => a == "*" || string.Equals(a.TrimEnd('/'), origin.TrimEnd('/'), StringComparison.OrdinalIgnoreCase));
    }
}
