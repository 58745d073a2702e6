# Serving: build with the .NET SDK, run on the ASP.NET runtime as a non-root user.
#   docker build -t serving .                                 (CPU image, the default target)
#   docker build --target gpu -t serving:gpu .                (ONNX Runtime's CUDA package on a CUDA base)
#   docker run -p 8080:8080 -v serving-data:/data serving
#   docker run -p 8080:8080 -v /models/gemma-3-270m-it-ONNX:/models/gemma:ro \
#     -e Serving__Models__0__Id=gemma -e Serving__Models__0__Path=/models/gemma serving
# CI cannot run Docker; deploy/check-image.sh runs the same publish and starts its output as a
# non-root user with this image's environment.

# Ubuntu 24.04 (noble) throughout: the .NET 10 images' default distribution, and the GPU stage's.
FROM mcr.microsoft.com/dotnet/sdk:10.0-noble AS build
# src/KernelsNative: cmake and a C++17 compiler for libserving_kernels.so, clang to compile its
# CUDA kernels to PTX (no CUDA SDK needed): clang-14 as .ci/run installs it, else the
# distribution's clang (CMakeLists.txt takes clang++-14 first, then 15-19).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake g++ make \
    && (apt-get install -y --no-install-recommends clang-14 || apt-get install -y --no-install-recommends clang) \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props .editorconfig ./
COPY deploy/publish.sh deploy/
COPY src/ src/
COPY models/ models/
RUN deploy/publish.sh /app

# The GPU image: ONNX Runtime 1.32's Linux CUDA package (CUDA 13 + cuDNN 9; 276 MB of providers, so CI checks the CPU image
# only, and its 150 MB limit) on NVIDIA's CUDA 13 + cuDNN 9 runtime, with the ASP.NET runtime copied in.
FROM build AS build-gpu
RUN deploy/publish.sh /app-gpu -p:OnnxRuntimePackage=Microsoft.ML.OnnxRuntime.Gpu.Linux

FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS gpu
COPY --from=mcr.microsoft.com/dotnet/aspnet:10.0-noble /usr/share/dotnet /usr/share/dotnet
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet \
    && apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates libicu74 libssl3t64 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1654 --user-group --create-home app \
    && mkdir -p /data && chown 1654 /data
WORKDIR /app
COPY --from=build-gpu /app-gpu ./
ENV ASPNETCORE_HTTP_PORTS=8080 \
    Serving__DataDirectory=/data \
    Serving__Telemetry__JsonLogs=true
USER 1654
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health/ready || exit 1
ENTRYPOINT ["dotnet", "Serving.Server.dll"]

# The default target (last stage): CPU only.
FROM mcr.microsoft.com/dotnet/aspnet:10.0-noble AS runtime
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
