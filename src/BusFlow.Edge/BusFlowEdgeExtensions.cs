using System.Text;
using BusFlow.Edge.Auth;
using BusFlow.Edge.Http;
using BusFlow.Edge.Live;
using BusFlow.Edge.WebSockets;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace BusFlow.Edge;

/// <summary>Adds the web edge: REST API, WebSocket and SSE relay, long-poll, health and metrics.</summary>
public static partial class BusFlowEdgeExtensions
{
    /// <summary>
    /// Runs the edge in this process, with the settings of the <c>BusFlow:Edge</c> section. Needs the
    /// store (<c>UseStore</c>): subscribers that resume or fall behind are served from it. Invalid
    /// settings throw at start naming the setting.
    /// </summary>
    public static BusFlowBuilder UseEdge(this BusFlowBuilder busflow, IConfiguration configuration, Action<EdgeOptions>? configure = null)
    {
        var options = new EdgeOptions();
        configuration.GetSection(EdgeOptions.Section).Bind(options);
        configure?.Invoke(options);
        Validate(options);

        var services = busflow.Services;
        services.AddSingleton(Options.Create(options));
        services.AddMetrics();
        services.AddProblemDetails();
        services.AddSingleton<EdgeMetrics>();
        services.AddSingleton<HostPolicy>();
        services.AddSingleton<PipelineSignals>();
        services.AddSingleton<SubscriptionHub>();
        services.AddSingleton<LiveFeed>();
        services.AddHostedService(sp => sp.GetRequiredService<LiveFeed>());
        if (options.TakeCommittedEventsInProcess)
        {
            services.AddSingleton<ICommittedEventsListener>(sp => sp.GetRequiredService<LiveFeed>());
        }
        services.AddHostedService<EdgeHousekeeping>();
        services.TryAddSingleton<IBusFlowPrincipalResolver, DefaultPrincipalResolver>();
        if (options.Auth.Jwt.Enabled)
        {
            services.AddAuthentication().AddJwtBearer(DefaultPrincipalResolver.JwtScheme, jwt => ConfigureJwt(jwt, options.Auth.Jwt));
        }

        // Every edge node gets every event on its own auto-deleted queue.
        var machine = new string([.. Environment.MachineName.ToLowerInvariant().Where(char.IsAsciiLetterOrDigit).Take(20)]);
        var node = $"busflow-edge-{machine}-{Guid.NewGuid():N}";
        busflow.Bus.AddConsumer<EdgeEventConsumer>().Endpoint(e =>
        {
            e.Name = node;
            e.Temporary = true;
            e.PrefetchCount = 256;
        });
        return busflow;
    }

    /// <summary>
    /// The edge reads pipelines, events and idempotency keys through the core's read seams; a
    /// process that registered none (no <c>UseStore</c>) is told so at start, not at its first request.
    /// (Where the container validates on build, as in ASP.NET Core's Development environment, the
    /// container's own error names the first missing seam before this runs.)
    /// </summary>
    private static void RequireReadSeams(IServiceProvider services)
    {
        var registered = services.GetRequiredService<IServiceProviderIsService>();
        var missing = new[] { typeof(IPipelineQueries), typeof(IPipelineEventLog), typeof(IIdempotencyKeys) }.Where(t => !registered.IsService(t)).Select(t => t.Name).ToList();
        if (missing.Count > 0)
        {
            throw new InvalidOperationException($"The web edge reads through IPipelineQueries, IPipelineEventLog and IIdempotencyKeys; not registered: {string.Join(", ", missing)}. Call UseStore(...) inside AddBusFlow (BusFlow.Store), or register an implementation of each.");
        }
    }

    /// <summary>Maps <c>/api</c>, <c>/ws</c> and <c>/health</c>. Call after building the app.</summary>
    public static IEndpointRouteBuilder MapBusFlowEdge(this WebApplication app)
    {
        RequireReadSeams(app.Services);
        var options = app.Services.GetRequiredService<IOptions<EdgeOptions>>().Value;
        app.Use((http, next) => CorkedStream.UnderWebSockets(http, next, "/ws"));
        app.UseWebSockets(new WebSocketOptions { KeepAliveInterval = options.HeartbeatInterval, KeepAliveTimeout = options.HeartbeatInterval * 2 });
        if (!options.Auth.Enabled)
        {
            LogNoAuth(app.Logger);
            RefuseNetworkWithoutAuth(app, options);
        }

        var edge = app.MapGroup("").AddEndpointFilter(PrincipalFilter.InvokeAsync);
        PipelinesApi.Map(edge);
        edge.Map("/ws", WebSocketEndpoint.HandleAsync);
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false });
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = check => check.Tags.Contains("ready") });
        return app;
    }

    /// <summary>
    /// Asks for the edge's callers on another route of the application (the host's <c>/metrics</c>):
    /// the same checks as the edge's own routes (host, listener, origin, an API key or token when
    /// auth is on). Call before mapping the route.
    /// </summary>
    public static IApplicationBuilder RequireBusFlowCaller(this IApplicationBuilder app, PathString path) =>
        app.UseWhen(http => http.Request.Path.StartsWithSegments(path), branch => branch.Use(async (http, next) =>
        {
            if (await PrincipalFilter.CheckAsync(http) is { } refused)
            {
                await refused.ExecuteAsync(http);
                return;
            }

            await next(http);
        }));

    /// <summary>
    /// Without auth, the edge serves loopback only unless <see cref="EdgeAuthOptions.AllowAnonymousNetworkAccess"/>
    /// says otherwise: configured URLs beyond loopback throw here, before the server listens; a
    /// listener set up in code is caught once the server started (the host stops, and meanwhile the
    /// principal filter answers 503).
    /// </summary>
    private static void RefuseNetworkWithoutAuth(WebApplication app, EdgeOptions options)
    {
        if (options.Auth.AllowAnonymousNetworkAccess)
        {
            return;
        }

        const string Fix = "Configure BusFlow:Edge:Auth:ApiKeys or BusFlow:Edge:Auth:Jwt, listen on localhost only, or set BusFlow:Edge:Auth:AllowAnonymousNetworkAccess=true to accept that anyone who can reach this node sees and controls every pipeline.";
        if (HostPolicy.NonLoopbackUrls(app.Configuration) is { Count: > 0 } exposed)
        {
            throw new InvalidOperationException($"BusFlow edge refuses to listen on {string.Join(", ", exposed)} without authentication. {Fix}");
        }

        app.Lifetime.ApplicationStarted.Register(() =>
        {
            if (app.Services.GetRequiredService<HostPolicy>().ListensOnLoopbackOnly() == false)
            {
                var urls = string.Join(", ", app.Urls);
                LogRefusedNetwork(app.Logger, urls, Fix);
                app.Lifetime.StopApplication();
            }
        });
    }

    private static void ConfigureJwt(JwtBearerOptions jwt, EdgeJwtOptions settings)
    {
        jwt.MapInboundClaims = false;
        if (!string.IsNullOrEmpty(settings.Authority))
        {
            jwt.Authority = settings.Authority;
        }

        jwt.TokenValidationParameters = new TokenValidationParameters
        {
            // With an authority the valid issuer comes from its discovery document.
            ValidateIssuer = !string.IsNullOrEmpty(settings.Issuer) || !string.IsNullOrEmpty(settings.Authority),
            ValidIssuer = settings.Issuer,
            ValidateAudience = !string.IsNullOrEmpty(settings.Audience),
            ValidAudience = settings.Audience,
            ValidateLifetime = true,
            NameClaimType = "sub",
        };
        if (!string.IsNullOrEmpty(settings.SigningKey))
        {
            jwt.TokenValidationParameters.IssuerSigningKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(settings.SigningKey));
        }

        // Browsers cannot set headers on WebSockets and EventSource: accept the token as access_token.
        jwt.Events = new JwtBearerEvents
        {
            OnMessageReceived = context =>
            {
                if (string.IsNullOrEmpty(context.Request.Headers.Authorization) && context.Request.Query.TryGetValue("access_token", out var token))
                {
                    context.Token = token;
                }

                return Task.CompletedTask;
            },
        };
    }

    private static void Validate(EdgeOptions options)
    {
        var errors = new List<string>();
        var context = new System.ComponentModel.DataAnnotations.ValidationContext(options);
        var results = new List<System.ComponentModel.DataAnnotations.ValidationResult>();
        if (!System.ComponentModel.DataAnnotations.Validator.TryValidateObject(options, context, results, validateAllProperties: true))
        {
            errors.AddRange(results.Select(r => $"{EdgeOptions.Section}:{string.Join(",", r.MemberNames)}: {r.ErrorMessage}"));
        }

        void Positive(TimeSpan value, string name)
        {
            if (value <= TimeSpan.Zero)
            {
                errors.Add($"{EdgeOptions.Section}:{name} must be a positive duration (for example 00:00:30), not {value}");
            }
        }

        Positive(options.StallTimeout, nameof(options.StallTimeout));
        Positive(options.HeartbeatInterval, nameof(options.HeartbeatInterval));
        Positive(options.GapTimeout, nameof(options.GapTimeout));
        Positive(options.TailCheck, nameof(options.TailCheck));
        Positive(options.DrainTimeout, nameof(options.DrainTimeout));
        Positive(options.StartWait, nameof(options.StartWait));
        Positive(options.BrokerTimeout, nameof(options.BrokerTimeout));
        if (options.Auth.Jwt.SigningKey is { Length: > 0 } key && Encoding.UTF8.GetByteCount(key) < 32)
        {
            errors.Add($"{EdgeOptions.Section}:Auth:Jwt:SigningKey must be at least 32 bytes");
        }

        if (!string.IsNullOrEmpty(options.Auth.Jwt.Authority) && string.IsNullOrWhiteSpace(options.Auth.Jwt.Audience))
        {
            // Any application's token from a shared authority would be accepted otherwise.
            errors.Add($"{EdgeOptions.Section}:Auth:Jwt:Audience is required with an Authority: set it to the audience your tokens are issued for");
        }

        foreach (var (apiKey, tenant) in options.Auth.ApiKeys)
        {
            if (string.IsNullOrWhiteSpace(apiKey) || string.IsNullOrWhiteSpace(tenant))
            {
                errors.Add($"{EdgeOptions.Section}:Auth:ApiKeys entries map a non-empty key to a non-empty tenant");
            }
        }

        if (errors.Count > 0)
        {
            throw new OptionsValidationException(EdgeOptions.Section, typeof(EdgeOptions), errors);
        }
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "BusFlow edge listens on {Urls} without authentication and stops. {Fix}")]
    private static partial void LogRefusedNetwork(ILogger logger, string urls, string fix);

    [LoggerMessage(Level = LogLevel.Warning, Message = "BusFlow edge is running WITHOUT authentication: every caller sees and controls every pipeline. Configure BusFlow:Edge:Auth:ApiKeys or BusFlow:Edge:Auth:Jwt to require it.")]
    private static partial void LogNoAuth(ILogger logger);
}

/// <summary>Closes stalled connections every second, and on shutdown drains and closes every connection with 1001.</summary>
internal sealed class EdgeHousekeeping(SubscriptionHub hub, IHostApplicationLifetime lifetime) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Before the server stops waiting for requests: connections are long requests.
        lifetime.ApplicationStopping.Register(() => hub.ShutdownAsync(CancellationToken.None).GetAwaiter().GetResult());
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                hub.CloseStalled();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
