package dev.ext4j.nio;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.UserPrincipal;
import java.nio.file.attribute.UserPrincipalLookupService;
import java.nio.file.attribute.UserPrincipalNotFoundException;
import java.util.HashMap;
import java.util.Map;

/**
 * Owners of inodes as principals: numeric ids, named after this machine's /etc/passwd and
 * /etc/group as {@code ls -l} of a mounted image names them. A number is a name too ("1000").
 */
final class Principals extends UserPrincipalLookupService {
    static final Principals SERVICE = new Principals();

    /** A uid; equal to another of the same id. */
    record User(long id, String name) implements UserPrincipal {
        @Override
        public String getName() {
            return name;
        }

        @Override
        public String toString() {
            return name;
        }
    }

    /** A gid. */
    record Group(long id, String name) implements GroupPrincipal {
        @Override
        public String getName() {
            return name;
        }

        @Override
        public String toString() {
            return name;
        }
    }

    private volatile Map<String, Long>[] tables;

    private Principals() {
    }

    /** {name to id} of /etc/passwd and of /etc/group; empty where they cannot be read. */
    @SuppressWarnings("unchecked")
    private Map<String, Long>[] tables() {
        Map<String, Long>[] t = tables;
        if (t == null) {
            t = new Map[] {read(Path.of("/etc/passwd")), read(Path.of("/etc/group"))};
            tables = t;
        }
        return t;
    }

    private static Map<String, Long> read(Path file) {
        Map<String, Long> m = new HashMap<>();
        try {
            for (String line : Files.readAllLines(file)) {
                String[] f = line.split(":");
                if (f.length > 2) {
                    try {
                        m.putIfAbsent(f[0], Long.parseLong(f[2]));
                    } catch (NumberFormatException e) {
                        // not an entry
                    }
                }
            }
        } catch (IOException e) {
            // numbers only
        }
        return m;
    }

    private String nameOf(int table, long id) {
        for (Map.Entry<String, Long> e : tables()[table].entrySet()) {
            if (e.getValue() == id) {
                return e.getKey();
            }
        }
        return Long.toString(id);
    }

    User user(long uid) {
        return new User(uid, nameOf(0, uid));
    }

    Group group(long gid) {
        return new Group(gid, nameOf(1, gid));
    }

    private long idOf(int table, String name) throws UserPrincipalNotFoundException {
        Long id = tables()[table].get(name);
        if (id != null) {
            return id;
        }
        try {
            return Long.parseLong(name);
        } catch (NumberFormatException e) {
            throw new UserPrincipalNotFoundException(name);
        }
    }

    @Override
    public User lookupPrincipalByName(String name) throws UserPrincipalNotFoundException {
        return user(idOf(0, name));
    }

    @Override
    public Group lookupPrincipalByGroupName(String group) throws UserPrincipalNotFoundException {
        return group(idOf(1, group));
    }

    /** The uid a principal from any filesystem stands for: its name looked up here. */
    static long uidOf(UserPrincipal p) throws IOException {
        return p instanceof User u ? u.id() : SERVICE.idOf(0, p.getName());
    }

    static long gidOf(GroupPrincipal p) throws IOException {
        return p instanceof Group g ? g.id() : SERVICE.idOf(1, p.getName());
    }

}
