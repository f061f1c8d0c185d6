using BusFlow.Edge.Http;
using Microsoft.AspNetCore.Http;

namespace BusFlow.Edge.Auth;

/// <summary>Resolves the caller before an edge endpoint runs; an unknown caller gets 401.</summary>
internal static class PrincipalFilter
{
    private static readonly object ItemKey = new();

    public static async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;

        // Browsers send Origin on cross-site requests: a page elsewhere must not start, cancel or
        // answer pipelines, open sockets or streams, least of all when auth is off. One check for
        // every edge endpoint; same-origin pages and non-browser clients pass.
        if (!OriginPolicy.Allows(http.Request, EdgeOrigins(http)))
        {
            return Problems.Of(StatusCodes.Status403Forbidden, "origin_not_allowed", "Origin not allowed", "This origin is not in BusFlow:Edge:AllowedOrigins.");
        }

        var resolver = http.RequestServices.GetService(typeof(IBusFlowPrincipalResolver)) as IBusFlowPrincipalResolver
            ?? throw new InvalidOperationException("IBusFlowPrincipalResolver is not registered: call UseEdge.");
        if (await resolver.ResolveAsync(http) is not { } principal)
        {
            return Problems.Unauthorized();
        }

        http.Items[ItemKey] = principal;
        return await next(context);
    }

    private static List<string> EdgeOrigins(HttpContext http) =>
        (http.RequestServices.GetService(typeof(Microsoft.Extensions.Options.IOptions<EdgeOptions>)) as Microsoft.Extensions.Options.IOptions<EdgeOptions>)?.Value.AllowedOrigins ?? [];

    /// <summary>The caller resolved for this request.</summary>
    public static BusFlowPrincipal Principal(this HttpContext http) =>
        http.Items.TryGetValue(ItemKey, out var principal) && principal is BusFlowPrincipal p
            ? p
            : throw new InvalidOperationException("The request has no BusFlow principal: the endpoint is not behind the principal filter.");
}
