# The image for `typha serve` and `felix-agent` (helm/typha uses it for both).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY snapshot ./snapshot
COPY syncproto ./syncproto
COPY calico_model ./calico_model
COPY dataplane ./dataplane
COPY typha ./typha
COPY felix_client ./felix_client
COPY commands ./commands
COPY loadtest ./loadtest
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin typha
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
EXPOSE 5473 9098
ENTRYPOINT ["typha"]
CMD ["serve"]
