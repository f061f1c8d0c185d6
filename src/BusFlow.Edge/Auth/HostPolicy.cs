using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace BusFlow.Edge.Auth;

/// <summary>
/// Which <c>Host</c> names the edge answers to, against DNS rebinding: a page on an attacker's domain
/// that resolves to this node sends the attacker's name as <c>Host</c> (and as <c>Origin</c>), so an
/// Origin compared with the request's own Host proves nothing. With <see cref="EdgeOptions.AllowedHosts"/>
/// set, only those names are served; without, a node listening on loopback addresses only serves
/// loopback names (<c>localhost</c>, <c>*.localhost</c>, 127.0.0.0/8, <c>::1</c>), and a node listening
/// on the network serves any name (it needs auth, or an explicit opt-out, to start at all; see
/// <see cref="NonLoopbackUrls"/>).
/// </summary>
internal sealed class HostPolicy(IServer server, IOptions<EdgeOptions> options)
{
    private readonly List<string> _allowed = options.Value.AllowedHosts;
    private bool? _loopbackOnly;

    /// <summary>True when the request's Host is a name this node serves.</summary>
    public bool Allows(HttpRequest request)
    {
        var host = request.Host.Host;
        if (_allowed.Count > 0)
        {
            return _allowed.Any(a => Matches(a, host));
        }

        return ListensOnLoopbackOnly() != true || IsLoopbackName(host);
    }

    /// <summary>
    /// Whether the server listens on loopback addresses only, read from its bound addresses; null
    /// while it has none (not started yet, or a server without addresses such as a test server).
    /// </summary>
    public bool? ListensOnLoopbackOnly()
    {
        if (_loopbackOnly is { } known)
        {
            return known;
        }

        var addresses = server.Features.Get<IServerAddressesFeature>()?.Addresses;
        if (addresses is null || addresses.Count == 0)
        {
            return null;
        }

        _loopbackOnly = addresses.All(IsLoopbackUrl);
        return _loopbackOnly;
    }

    /// <summary>The URLs in the configuration (<c>urls</c>, <c>ASPNETCORE_URLS</c>, <c>Kestrel:Endpoints</c>) that listen beyond loopback.</summary>
    public static List<string> NonLoopbackUrls(IConfiguration configuration)
    {
        var urls = (configuration["urls"] ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        urls.AddRange(configuration.GetSection("Kestrel:Endpoints").GetChildren().Select(e => e["Url"]).OfType<string>());
        return [.. urls.Where(u => !IsLoopbackUrl(u))];
    }

    /// <summary>True for a listening URL on a loopback address or name, or a Unix socket.</summary>
    public static bool IsLoopbackUrl(string url)
    {
        var rest = url.Contains("://", StringComparison.Ordinal) ? url[(url.IndexOf("://", StringComparison.Ordinal) + 3)..] : url;
        if (rest.StartsWith("unix:", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        var host = rest.StartsWith('[') ? rest[..(rest.IndexOf(']') + 1)] : rest.Split(':', '/')[0];
        return IsLoopbackName(host);
    }

    /// <summary>True for <c>localhost</c>, a name under <c>.localhost</c> (RFC 6761) or a loopback address.</summary>
    public static bool IsLoopbackName(string host)
    {
        host = host.TrimEnd('.');
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || host.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        return IPAddress.TryParse(host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address);
    }

    /// <summary><c>*</c>, an exact name, or <c>*.example.com</c> for the names under example.com.</summary>
    private static bool Matches(string allowed, string host) =>
        allowed == "*"
        || string.Equals(allowed, host, StringComparison.OrdinalIgnoreCase)
        || (allowed.StartsWith("*.", StringComparison.Ordinal) && host.EndsWith(allowed[1..], StringComparison.OrdinalIgnoreCase));
}
