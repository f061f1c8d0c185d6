using Microsoft.AspNetCore.Http;

namespace BusFlow.Edge.Auth;

/// <summary>
/// Turns a request into a principal; null means unauthenticated (401). Register your own to map
/// your identity system onto tenants; the default reads API keys and the authenticated user's tenant claim.
/// </summary>
public interface IBusFlowPrincipalResolver
{
    ValueTask<BusFlowPrincipal?> ResolveAsync(HttpContext context);
}
