using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace BusFlow.Edge.Auth;

/// <summary>
/// API keys first (<c>X-Api-Key</c>, <c>Authorization: ApiKey</c>, or <c>access_token</c> for
/// WebSockets and EventSource, which cannot set headers), then a JWT bearer token through ASP.NET
/// Core authentication; with no auth configured every caller is <see cref="BusFlowPrincipal.Anonymous"/>.
/// </summary>
internal sealed class DefaultPrincipalResolver(IOptions<EdgeOptions> options) : IBusFlowPrincipalResolver
{
    public const string JwtScheme = "BusFlowJwt";

    private readonly EdgeAuthOptions _auth = options.Value.Auth;

    public async ValueTask<BusFlowPrincipal?> ResolveAsync(HttpContext context)
    {
        if (!_auth.Enabled)
        {
            return BusFlowPrincipal.Anonymous;
        }

        var key = ApiKey(context.Request);
        if (key is not null && _auth.ApiKeys.TryGetValue(key, out var tenant))
        {
            return new BusFlowPrincipal($"api-key:{tenant}", tenant);
        }

        if (_auth.Jwt.Enabled)
        {
            var result = await context.AuthenticateAsync(JwtScheme);
            if (result.Succeeded && result.Principal is { } user)
            {
                var name = user.Identity?.Name ?? user.FindFirst("sub")?.Value ?? "jwt";
                if (user.FindFirst(_auth.TenantClaim)?.Value is { Length: > 0 } claimed && !string.IsNullOrWhiteSpace(claimed))
                {
                    return new BusFlowPrincipal(name, claimed);
                }

                // No tenant: all tenants only for the operators' role, else refused like no token at all
                // (a token issued for another application by a shared authority has no tenant either).
                if (_auth.Jwt.AllTenantsRole is { Length: > 0 } role && user.Claims.Any(c => c.Type is "role" or "roles" && c.Value == role))
                {
                    return new BusFlowPrincipal(name, null);
                }
            }
        }

        return null;
    }

    private static string? ApiKey(HttpRequest request)
    {
        if (request.Headers.TryGetValue("X-Api-Key", out var header) && header.Count > 0)
        {
            return header[0];
        }

        var authorization = request.Headers.Authorization.ToString();
        if (authorization.StartsWith("ApiKey ", StringComparison.OrdinalIgnoreCase))
        {
            return authorization[7..].Trim();
        }

        return request.Query.TryGetValue("access_token", out var token) ? token.ToString() : null;
    }
}
