package dev.ext4j.testutil;

import java.util.List;

/** An mkfs.ext4 configuration to run a parameterized test on: a name, an image size, mkfs flags. */
public record ImageVariant(String name, String size, List<String> args) {
    @Override
    public String toString() {
        return name;
    }
}
