using System.Net.Http.Headers;
using System.Text;

namespace BusFlow.Testing;

/// <summary>A fresh RabbitMQ virtual host, created through the management API and deleted after, so tests never share queues.</summary>
public sealed class RabbitMqVirtualHost : IAsyncDisposable
{
    private readonly HttpClient _http;
    private readonly Uri _broker;

    private RabbitMqVirtualHost(HttpClient http, Uri broker, string name)
    {
        _http = http;
        _broker = broker;
        Name = name;
    }

    public string Name { get; }

    /// <summary>A virtual host on the tests' broker (<see cref="TestServers"/>).</summary>
    public static Task<RabbitMqVirtualHost> Create() => Create(TestServers.RabbitMq, TestServers.RabbitMqManagementPort, "busflow-test-");

    /// <summary>A virtual host named <paramref name="prefix"/> and a random suffix on <paramref name="broker"/>, managed through its management port.</summary>
    public static async Task<RabbitMqVirtualHost> Create(Uri broker, int managementPort, string prefix)
    {
        var (user, password) = Credentials(broker);
        var http = new HttpClient { BaseAddress = new Uri($"http://{broker.Host}:{managementPort}/api/") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        var vhost = new RabbitMqVirtualHost(http, broker, prefix + Guid.NewGuid().ToString("N")[..12]);
        await vhost.CreateAsync();
        return vhost;
    }

    /// <summary>The RabbitMQ server's version, from the management API.</summary>
    public async Task<string> ServerVersion()
    {
        using var overview = System.Text.Json.JsonDocument.Parse(await _http.GetStringAsync(new Uri("overview", UriKind.Relative)));
        return $"RabbitMQ {overview.RootElement.GetProperty("rabbitmq_version").GetString()} (Erlang {overview.RootElement.GetProperty("erlang_version").GetString()})";
    }

    /// <summary>
    /// The broker goes away for this virtual host's clients, its queues and messages kept: new
    /// connections are refused (a connection limit of 0) and the open ones are closed.
    /// </summary>
    public async Task RefuseConnectionsAsync()
    {
        using var limit = new StringContent("""{"value":0}""", Encoding.UTF8, "application/json");
        (await _http.PutAsync($"vhost-limits/{Name}/max-connections", limit)).EnsureSuccessStatusCode();
        // The management API lists a connection only after its next statistics emission (every 5 s).
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        string[] names;
        while ((names = await ConnectionNamesAsync()).Length == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, $"no client connection to virtual host {Name} was listed within 30 s");
            await Task.Delay(500);
        }

        foreach (var name in names)
        {
            using var closed = await _http.DeleteAsync($"connections/{Uri.EscapeDataString(name)}");
        }
    }

    private async Task<string[]> ConnectionNamesAsync()
    {
        using var listed = await _http.GetAsync($"vhosts/{Name}/connections");
        listed.EnsureSuccessStatusCode();
        using var connections = System.Text.Json.JsonDocument.Parse(await listed.Content.ReadAsStringAsync());
        return [.. connections.RootElement.EnumerateArray().Select(c => c.GetProperty("name").GetString()!)];
    }

    /// <summary>Each queue of this virtual host and its type (<c>classic</c>, <c>quorum</c>).</summary>
    public async Task<Dictionary<string, string>> QueueTypesAsync()
    {
        using var listed = await _http.GetAsync($"queues/{Name}");
        listed.EnsureSuccessStatusCode();
        using var queues = System.Text.Json.JsonDocument.Parse(await listed.Content.ReadAsStringAsync());
        return queues.RootElement.EnumerateArray().ToDictionary(q => q.GetProperty("name").GetString()!, q => q.GetProperty("type").GetString()!);
    }

    /// <summary>
    /// How many messages <paramref name="queue"/> holds, taken from the queue itself (they go back
    /// unchanged); 0 when the queue does not exist. The management API's counts lag by seconds.
    /// </summary>
    public async Task<int> MessagesInAsync(string queue)
    {
        using var body = new StringContent("""{"count":1000,"ackmode":"ack_requeue_true","encoding":"auto","truncate":10}""", Encoding.UTF8, "application/json");
        using var got = await _http.PostAsync($"queues/{Name}/{Uri.EscapeDataString(queue)}/get", body);
        if (got.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            return 0;
        }

        got.EnsureSuccessStatusCode();
        using var messages = System.Text.Json.JsonDocument.Parse(await got.Content.ReadAsStringAsync());
        return messages.RootElement.GetArrayLength();
    }

    /// <summary>Lets clients connect again (after <see cref="RefuseConnectionsAsync"/>).</summary>
    public async Task AcceptConnectionsAsync() => (await _http.DeleteAsync($"vhost-limits/{Name}/max-connections")).EnsureSuccessStatusCode();

    private async Task CreateAsync()
    {
        (await _http.PutAsync($"vhosts/{Name}", null)).EnsureSuccessStatusCode();
        var (user, _) = Credentials(_broker);
        using var permissions = new StringContent("""{"configure":".*","write":".*","read":".*"}""", Encoding.UTF8, "application/json");
        (await _http.PutAsync($"permissions/{Name}/{Uri.EscapeDataString(user)}", permissions)).EnsureSuccessStatusCode();
    }

    /// <summary>Configuration that points BusFlow at this virtual host.</summary>
    public Dictionary<string, string?> BusFlowSettings() => Settings(_broker, Name);

    /// <summary>Configuration that points BusFlow at the named virtual host of the test broker.</summary>
    public static Dictionary<string, string?> Settings(string virtualHost) => Settings(TestServers.RabbitMq, virtualHost);

    private static Dictionary<string, string?> Settings(Uri broker, string virtualHost)
    {
        var (user, password) = Credentials(broker);
        return new()
        {
            ["BusFlow:Transport"] = "RabbitMq",
            ["BusFlow:RabbitMq:Host"] = broker.Host,
            ["BusFlow:RabbitMq:Port"] = broker.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["BusFlow:RabbitMq:VirtualHost"] = virtualHost,
            ["BusFlow:RabbitMq:Username"] = user,
            ["BusFlow:RabbitMq:Password"] = password,
        };
    }

    private static (string User, string Password) Credentials(Uri broker)
    {
        var parts = broker.UserInfo.Split(':');
        return (Uri.UnescapeDataString(parts[0]), parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : "");
    }

    public async ValueTask DisposeAsync()
    {
        using var _ = await _http.DeleteAsync($"vhosts/{Name}");
        _http.Dispose();
    }
}
