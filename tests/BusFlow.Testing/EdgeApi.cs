using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace BusFlow.Testing;

/// <summary>The REST calls the tests make, on a real HttpClient.</summary>
public static class EdgeApi
{
    public static async Task<Guid> StartAsync(this HttpClient http, string definition, object? input = null, Dictionary<string, string>? tags = null, string? idempotencyKey = null)
    {
        using var response = await http.StartRawAsync(definition, input, tags, idempotencyKey);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"start answered {(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement.GetProperty("pipelineId").GetGuid();
    }

    public static Task<HttpResponseMessage> StartRawAsync(this HttpClient http, string definition, object? input = null, Dictionary<string, string>? tags = null, string? idempotencyKey = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/api/pipelines")
        {
            Content = JsonContent.Create(new { definition, input, tags }, options: JsonSerializerOptions.Web),
        };
        if (idempotencyKey is not null)
        {
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        }

        return http.SendAsync(request);
    }

    public static async Task<HttpResponseMessage> PostJsonAsync(this HttpClient http, string path, string json, string? idempotencyKey = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (idempotencyKey is not null)
        {
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        }

        return await http.SendAsync(request);
    }

    public static async Task<JsonElement> GetJsonAsync(this HttpClient http, string path)
    {
        using var response = await http.GetAsync(path);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET {path} answered {(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>Polls the status until the pipeline is no longer running.</summary>
    public static async Task<JsonElement> WaitForEndAsync(this HttpClient http, Guid id, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (true)
        {
            var status = await http.GetJsonAsync($"/api/pipelines/{id}");
            if (status.GetProperty("status").GetString() != "Running")
            {
                return status;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"pipeline {id} still running: {status}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>Problem details: status and code.</summary>
    public static async Task<(HttpStatusCode Status, string? Code, JsonElement Body)> ProblemAsync(this HttpResponseMessage response)
    {
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return (response.StatusCode, body.TryGetProperty("code", out var code) ? code.GetString() : null, body);
    }
}
