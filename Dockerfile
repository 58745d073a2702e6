# Serving: build with the .NET SDK, run on the ASP.NET runtime as a non-root user.
#   docker build -t serving .
#   docker run -p 8080:8080 -v serving-data:/data serving
#   docker run -p 8080:8080 -v /models/gemma-3-270m-it-ONNX:/models/gemma:ro \
#     -e Serving__Models__0__Id=gemma -e Serving__Models__0__Path=/models/gemma serving

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props .editorconfig ./
COPY src/ src/
COPY models/ models/
RUN dotnet publish src/Server/Server.csproj -c Release -o /app --nologo

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
# curl only serves the health check below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app ./
# Demo models and collections live in /data; mount a volume to keep them across restarts.
RUN mkdir -p /data && chown "$APP_UID" /data
# Container logs are read by collectors: JSON lines carrying the trace id.
ENV ASPNETCORE_HTTP_PORTS=8080 \
    Serving__DataDirectory=/data \
    Serving__Telemetry__JsonLogs=true
USER $APP_UID
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health/ready || exit 1
ENTRYPOINT ["dotnet", "Serving.Server.dll"]
