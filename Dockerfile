# ext4j in a container.
#
#   docker build -t ext4j .
#   docker run --rm -it --device /dev/fuse --cap-add SYS_ADMIN -v "$PWD":/data \
#       ext4j mount -f /data/disk.img /mnt
#
# The mount lives in the container's mount namespace; look at it with
# "docker exec -it CONTAINER ls /mnt".

# --- build -------------------------------------------------------------------
FROM maven:3.9-eclipse-temurin-17 AS build
WORKDIR /src
COPY . .
RUN mvn -B -q -DskipTests package

# --- runtime -----------------------------------------------------------------
FROM eclipse-temurin:17-jre
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        fuse3 libfuse3-3 libfuse2 e2fsprogs \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/fuse-driver/target/ext4j.jar /opt/ext4j/ext4j.jar
COPY --from=build /src/fuse-driver/target/lib/ /opt/ext4j/lib/
RUN printf '%s\n' '#!/bin/sh' 'exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx1g -Dfile.encoding=ISO-8859-1 ${EXT4J_JAVA_OPTS:-} -jar /opt/ext4j/ext4j.jar "$@"' \
        > /usr/local/bin/ext4j \
 && chmod 0755 /usr/local/bin/ext4j
ENTRYPOINT ["ext4j"]
CMD ["--help"]
