using System.Net.Http.Headers;
using System.Text;

namespace BusFlow.IntegrationTests.Support;

/// <summary>A fresh RabbitMQ virtual host, created through the management API and deleted after, so tests never share queues.</summary>
public sealed class RabbitMqVirtualHost : IAsyncDisposable
{
    private readonly HttpClient _http;

    private RabbitMqVirtualHost(HttpClient http, string name)
    {
        _http = http;
        Name = name;
    }

    public string Name { get; }

    public static async Task<RabbitMqVirtualHost> Create()
    {
        var broker = TestServers.RabbitMq;
        var user = Uri.UnescapeDataString(broker.UserInfo.Split(':')[0]);
        var password = Uri.UnescapeDataString(broker.UserInfo.Split(':')[1]);
        var http = new HttpClient { BaseAddress = new Uri($"http://{broker.Host}:{TestServers.RabbitMqManagementPort}/api/") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        var name = "busflow-test-" + Guid.NewGuid().ToString("N")[..12];
        (await http.PutAsync($"vhosts/{name}", null)).EnsureSuccessStatusCode();
        using var permissions = new StringContent("""{"configure":".*","write":".*","read":".*"}""", Encoding.UTF8, "application/json");
        (await http.PutAsync($"permissions/{name}/{Uri.EscapeDataString(user)}", permissions)).EnsureSuccessStatusCode();
        return new RabbitMqVirtualHost(http, name);
    }

    /// <summary>Configuration that points BusFlow at this virtual host.</summary>
    public Dictionary<string, string?> BusFlowSettings() => Settings(Name);

    /// <summary>Configuration that points BusFlow at the named virtual host of the test broker.</summary>
    public static Dictionary<string, string?> Settings(string virtualHost)
    {
        var broker = TestServers.RabbitMq;
        return new()
        {
            ["BusFlow:Transport"] = "RabbitMq",
            ["BusFlow:RabbitMq:Host"] = broker.Host,
            ["BusFlow:RabbitMq:Port"] = broker.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["BusFlow:RabbitMq:VirtualHost"] = virtualHost,
            ["BusFlow:RabbitMq:Username"] = Uri.UnescapeDataString(broker.UserInfo.Split(':')[0]),
            ["BusFlow:RabbitMq:Password"] = Uri.UnescapeDataString(broker.UserInfo.Split(':')[1]),
        };
    }

    public async ValueTask DisposeAsync()
    {
        using var _ = await _http.DeleteAsync($"vhosts/{Name}");
        _http.Dispose();
    }
}
