using BusFlow.Edge.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace BusFlow.Edge.Auth;

/// <summary>Resolves the caller before an edge endpoint runs; an unknown caller gets 401.</summary>
internal static class PrincipalFilter
{
    private static readonly object ItemKey = new();

    public static async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next) =>
        await CheckAsync(context.HttpContext) ?? await next(context);

    /// <summary>
    /// The edge's checks of a caller, in order: the host, a listener beyond loopback without auth,
    /// the origin, the credentials. Null when the caller may go on (its principal then in the
    /// request's items), else the answer that refuses it.
    /// </summary>
    public static async ValueTask<IResult?> CheckAsync(HttpContext http)
    {
        var hosts = http.RequestServices.GetRequiredService<HostPolicy>();
        if (!hosts.Allows(http.Request))
        {
            return Problems.Of(StatusCodes.Status400BadRequest, "host_not_allowed", "Host not allowed", $"This node does not answer to '{Problems.Truncate(http.Request.Host.Host)}'; BusFlow:Edge:AllowedHosts names the hosts it serves.");
        }

        var options = http.RequestServices.GetRequiredService<IOptions<EdgeOptions>>().Value;
        if (!options.Auth.Enabled && !options.Auth.AllowAnonymousNetworkAccess && hosts.ListensOnLoopbackOnly() == false)
        {
            // Listening on the network without auth, set up in a way the start-up check could not see.
            return Problems.Of(StatusCodes.Status503ServiceUnavailable, "insecure_listener", "Refusing to serve", "This node listens beyond loopback without authentication; configure BusFlow:Edge:Auth.");
        }

        // Browsers send Origin on cross-site requests: a page elsewhere must not start, cancel or
        // answer pipelines, open sockets or streams, least of all when auth is off. One check for
        // every edge endpoint; same-origin pages (their Host passed the host policy above, so a
        // rebound name does not count as the edge's own) and non-browser clients pass.
        if (!OriginPolicy.Allows(http.Request, options.AllowedOrigins))
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
        return null;
    }

    /// <summary>The caller resolved for this request.</summary>
    public static BusFlowPrincipal Principal(this HttpContext http) =>
        http.Items.TryGetValue(ItemKey, out var principal) && principal is BusFlowPrincipal p
            ? p
            : throw new InvalidOperationException("The request has no BusFlow principal: the endpoint is not behind the principal filter.");
}
